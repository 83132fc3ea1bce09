"""The Embedder interface: (N, 32000) float32 windows at 16 kHz → (N, dim) float32 vectors."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from monitor.messages import WINDOW_SAMPLES


class EmbedderError(RuntimeError):
    """An embedder that cannot be built or run; the message names the cause and the fix."""


@runtime_checkable
class Embedder(Protocol):
    @property
    def id(self) -> str:
        """Stable identity of what the vectors mean; a head trained on one id is never fed another's."""

    @property
    def dim(self) -> int: ...

    def embed(self, windows: np.ndarray) -> np.ndarray:
        """(N, 32000) float32 → (N, dim) float32."""


def check_windows(windows: np.ndarray) -> np.ndarray:
    """Enforce the window contract shared by every backend (HeAR's own graph would accept other lengths)."""
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[1] != WINDOW_SAMPLES:
        raise EmbedderError(f"embedder input must be (N, {WINDOW_SAMPLES}) at 16 kHz, got {windows.shape}")
    return np.ascontiguousarray(windows, dtype=np.float32)
