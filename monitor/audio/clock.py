"""Stream position -> wall-clock time, following the wall clock when time sync steps it.

Everything staff read (episode start and end, event times in the log) is a wall-clock time; the
pipeline only knows sample positions. The clock is anchored where the stream started (or was
reopened): a position's wall time is the anchor's plus the stream seconds since, at the playback
speed. When the wall clock moves against the monotonic clock (NTP or an operator corrected it
after the start), the anchor moves with it, so later events carry the corrected time; a step
beyond `STEP_WARNING_S` is logged once.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

_LOGGER = logging.getLogger("monitor.clock")  # the journal's name for these lines, as before the package
STEP_WARNING_S = 2.0  # a step this large is a correction worth a line in the journal
_FOLLOW_S = 0.05  # smaller differences are read jitter (the two clocks are read one after the other)


class StreamClock:
    """Thread-safe: the classifier, supervisor and store threads all ask for times."""

    def __init__(self, speed: float, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self._rate = speed or 1.0  # speed 0 (as fast as possible) stamps as if played in real time
        self._wall, self._monotonic = wall, monotonic
        self._lock = threading.Lock()
        self._anchor_s, self._anchor_wall, self._offset = 0.0, 0.0, 0.0
        self.anchor(0.0)

    def anchor(self, stream_s: float) -> None:
        """The sample at `stream_s` arrives now (the stream starts, or a microphone is reopened)."""
        with self._lock:
            self._anchor_s, self._anchor_wall = stream_s, self._wall()
            self._offset = self._anchor_wall - self._monotonic()

    def wall(self, stream_s: float) -> float:
        """Seconds since the epoch at which the stream reached `stream_s`, on today's wall clock."""
        with self._lock:
            step = self._wall() - self._monotonic() - self._offset
            if abs(step) > _FOLLOW_S:
                if abs(step) > STEP_WARNING_S:
                    _LOGGER.warning("the wall clock stepped %+.1f s (time sync?): event times follow it from now on",
                                    step)
                self._anchor_wall += step
                self._offset += step
            return self._anchor_wall + (stream_s - self._anchor_s) / self._rate
