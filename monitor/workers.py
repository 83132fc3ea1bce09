"""Thread plumbing for the live driver: bounded queues, worker threads that report progress."""
from __future__ import annotations

import logging
import os
import select
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

    def oldest(self) -> Any:
        """The item next in line (T or the END marker), None when empty; it stays queued."""
        with self._ready:
            return self._items[0] if self._items else None

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
        self.busy_from: int | None = None  # stream sample of the oldest input in hand (None when idle): its lag

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def run(self) -> None:
        try:
            self._body(self)
        except BaseException as exc:  # noqa: BLE001 - reported by the supervisor, which stops the service
            self.error = exc


class QueueDrain(Generic[T]):
    """A daemon thread that hands each queued item, in order, to `handle`; `put` never blocks: beyond
    `backlog` waiting items the oldest is dropped and counted. For outputs that may stall (a pipe nobody
    reads, a slow paging program), so that the stage producing them never waits."""

    def __init__(self, name: str, backlog: int, handle: Callable[[T], None]):
        self._queue: DropOldestQueue[T] = DropOldestQueue(maxlen=backlog)
        self._handle = handle
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    def start(self) -> None:
        self._thread.start()

    def put(self, item: T) -> None:
        self._queue.put(item)

    def finish(self, timeout_s: float) -> None:
        """Handles what is queued, waiting at most `timeout_s`."""
        self._queue.put(END)
        self._thread.join(timeout_s)

    def _loop(self) -> None:
        while True:
            for item in self._queue.get_batch(64, timeout=0.5):
                if item is END:
                    return
                self._handle(item)


class LineWriter:
    """Lines to a file descriptor (stdout, stderr: a pipe, journald's socket, a terminal) from a thread of
    their own, so a reader that stops reading never blocks the stage that printed or logged: the newest
    `backlog` lines wait, older ones are dropped and counted."""

    _CHUNK = 4096  # PIPE_BUF: a pipe select() calls writable takes this much without blocking

    def __init__(self, fd: int, backlog: int = 1000):
        self._fd = fd
        self._abandon = threading.Event()
        self._lines: QueueDrain[bytes | threading.Event] = QueueDrain(f"line-writer-{fd}", backlog, self._write)
        self._lines.start()

    @property
    def dropped(self) -> int:
        return self._lines.dropped

    def write_line(self, line: str) -> None:
        """Never blocks."""
        self._lines.put((line + "\n").encode(errors="replace"))

    def drain(self, timeout_s: float) -> bool:
        """Waits until the lines queued so far are written, for at most `timeout_s`; True if they are. Another
        writer's text (a closing summary) then follows them instead of landing among them."""
        written = threading.Event()
        self._lines.put(written)
        return written.wait(timeout_s)

    def close(self, timeout_s: float) -> None:
        """Writes what is queued, for at most `timeout_s`: a reader that never reads loses the rest."""
        self._lines.finish(timeout_s)
        self._abandon.set()

    def _write(self, data: bytes | threading.Event) -> None:
        if isinstance(data, threading.Event):  # drain's marker: everything before it is written
            data.set()
            return
        view = memoryview(data)
        while view and not self._abandon.is_set():
            if not select.select([], [self._fd], [], 0.2)[1]:
                continue  # the reader is not reading: wait, but stay able to give up at close
            try:
                view = view[os.write(self._fd, view[: self._CHUNK]):]
            except BlockingIOError:
                continue
            except OSError:
                return  # the reader is gone (EPIPE) or the descriptor closed: nobody left to tell


class LineHandler(logging.Handler):
    """A logging handler that writes through a LineWriter: logging never blocks a stage."""

    def __init__(self, writer: LineWriter):
        super().__init__()
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.write_line(self.format(record))
        except Exception:  # noqa: BLE001 - logging's own contract: a bad record must not raise
            self.handleError(record)


def describe_error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{exc.__class__.__name__}: {exc}"}
