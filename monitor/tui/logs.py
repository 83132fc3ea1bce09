"""Log records must not be written over a Textual screen, nor lost while it is up.

The root logger writes one line per record to stderr (monitor/cli.py). Where that is a file or the
journal it stays so; where it is the terminal the app draws on, records are held while the app runs
and written there, in order, once the screen has closed. (Textual's own TextualHandler would send
them to `textual console` only, which nobody runs at a bedside, and not those of other threads.)
"""
from __future__ import annotations

import logging
import sys
from collections import deque
from contextlib import contextmanager
from typing import IO, Iterator

HELD_AT_MOST = 10_000  # a dashboard may run for a whole shift: memory stays bounded, the newest are kept


def _is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _writes_to_terminal(handler: logging.Handler) -> bool:
    if isinstance(handler, logging.StreamHandler):
        return _is_terminal(handler.stream)
    # The console handlers monitor/cli.py installs (monitor.workers.LineHandler, TextualHandler) write to stderr.
    return _is_terminal(sys.stderr)


class _Held(logging.Handler):
    """Keeps records for the terminal handlers it stands in for."""

    def __init__(self, level: int, limit: int):
        super().__init__(level)
        self.records: deque[logging.LogRecord] = deque(maxlen=limit)
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) == self.records.maxlen:
            self.dropped += 1
        self.records.append(record)


@contextmanager
def held_while_on_screen(limit: int = HELD_AT_MOST) -> Iterator[None]:
    """While in the block, the root logger's handlers that write to a terminal are replaced by one that
    holds their records; afterwards they are restored and given what was held."""
    root = logging.getLogger()
    on_screen = [h for h in root.handlers if _writes_to_terminal(h)]
    if not on_screen:
        yield
        return
    held = _Held(min(h.level for h in on_screen), limit)
    for handler in on_screen:
        root.removeHandler(handler)
    root.addHandler(held)
    try:
        yield
    finally:
        root.removeHandler(held)
        for handler in on_screen:
            root.addHandler(handler)
        if held.dropped:
            logging.getLogger(__name__).warning("%d older log records from while the screen was up were dropped "
                                                "(%d kept)", held.dropped, len(held.records))
        for record in held.records:
            for handler in on_screen:
                if record.levelno >= handler.level:
                    handler.handle(record)
