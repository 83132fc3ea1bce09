"""Thread plumbing for the live driver: bounded queues, worker threads that report progress."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")

END = object()  # end-of-stream marker, passed down the pipeline so every stage drains in order


class DropOldestQueue(Generic[T]):
    """Bounded queue whose producer never blocks: when full, the oldest item is dropped and counted.

    `maxlen=None` makes it unbounded, for the store, where nothing may be lost.
    """

    def __init__(self, maxlen: int | None):
        self._items: deque = deque()
        self._maxlen = maxlen
        self._ready = threading.Condition()
        self.dropped = 0

    def put(self, item: T | object) -> None:
        with self._ready:
            if self._maxlen is not None and len(self._items) >= self._maxlen and item is not END:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._ready.notify()

    def get_batch(self, max_items: int, timeout: float) -> list:
        """Up to `max_items` items (at least one unless the timeout passed)."""
        with self._ready:
            if not self._items:
                self._ready.wait(timeout)
            batch: list[Any] = []  # items are T or the END marker
            while self._items and len(batch) < max_items:
                batch.append(self._items.popleft())
            return batch

    def __len__(self) -> int:
        return len(self._items)


class Worker(threading.Thread):
    """A pipeline thread. `beat` records progress so a watchdog can tell stalled from quiet;
    an exception is kept (not lost on stderr) for the supervisor to report and fail on."""

    def __init__(self, name: str, body: Callable[["Worker"], None]):
        super().__init__(name=name, daemon=True)
        self._body = body
        self.error: BaseException | None = None
        self.last_beat = time.monotonic()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def run(self) -> None:
        try:
            self._body(self)
        except BaseException as exc:  # noqa: BLE001 - reported by the supervisor, which stops the service
            self.error = exc


def describe_error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{exc.__class__.__name__}: {exc}"}
