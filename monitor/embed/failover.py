"""The remote embedder with an offline fallback: cries are typed whatever the server does.

A batch the server fails (down, slow, wrong shape, another model) is embedded again, whole, by the
fallback, so every window gets exactly one vector, tagged with the id of the embedder that made
it (the pipeline then applies that embedder's head). While the server is down, batches go straight
to the fallback: a dead server costs one timeout, not one per window. It is tried again by
`probe` (the live service calls it every few seconds, so a dead server is noticed without a cry)
and, for drivers that never probe, by the next batch after `retry_s`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import numpy as np

from monitor.embed.base import Embedder, EmbedderError
from monitor.embed.remote import RemoteEmbedder

_LOGGER = logging.getLogger(__name__)


class Failover:
    def __init__(self, remote: RemoteEmbedder, fallback: Embedder, retry_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.remote = remote
        self.fallback = fallback
        self._retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()  # the embedder and the probe thread both report
        self._fault: str | None = None
        self._retry_at = 0.0
        self.switches = 0  # to the fallback and back, for logs and tests

    @property
    def fault(self) -> str | None:
        """Why the server is not used now; None while it is."""
        return self._fault

    def embed(self, windows: np.ndarray) -> tuple[np.ndarray, str]:
        """Vectors for every window and the id of the embedder that made them."""
        if self._fault is None or self._clock() >= self._retry_at:
            try:
                vectors = self.remote.embed(windows)
            except EmbedderError as exc:
                self.failed(str(exc))
            else:
                self._answered()
                return vectors, self.remote.id
        return self.fallback.embed(windows), self.fallback.id

    def probe(self) -> None:
        """Ask the server: a cheap liveness check while it is in use, a whole embedding before it is used again."""
        try:
            if self._fault is None:
                self.remote.info()
            else:
                self.remote.probe()
        except EmbedderError as exc:
            self.failed(str(exc))
        else:
            self._answered()

    def failed(self, reason: str) -> None:
        """The server failed (here, or in a check made elsewhere, such as the one at start-up)."""
        with self._lock:
            self._retry_at = self._clock() + self._retry_s
            if self._fault is None:
                self.switches += 1
                _LOGGER.error("embedding server failed (%s): typing cries with the fallback %s until it answers again",
                              reason, self.fallback.id)
            self._fault = reason

    def _answered(self) -> None:
        with self._lock:
            if self._fault is not None:
                self.switches += 1
                _LOGGER.warning("embedding server %s answers again: back to %s", self.remote.url, self.remote.id)
            self._fault = None
