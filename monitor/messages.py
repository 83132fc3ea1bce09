"""Messages passed between pipeline stages.

Times inside the pipeline are absolute sample indices at SAMPLE_RATE; wall-clock time is
attached once, at the edge (store, bus).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 32_000  # HeAR's contract: exactly 2 s at 16 kHz
NOT_CRY = "not_cry"


def seconds(sample_index: int) -> float:
    return sample_index / SAMPLE_RATE


@dataclass(frozen=True)
class Block:
    """A run of 16 kHz mono float32 samples starting at absolute index `start`."""

    start: int
    samples: np.ndarray

    @property
    def end(self) -> int:
        return self.start + len(self.samples)


@dataclass(frozen=True)
class CryOnset:
    """A confirmed run of crying: its first sample, and the sample by which the detector was sure."""

    start: int
    confirmed: int


@dataclass(frozen=True)
class Activity:
    """The cry detector's decisions for consecutive frames; frame i stands for samples
    [start + i * frame_hop, start + (i + 1) * frame_hop).

    `active` marks frames inside confirmed cry runs; `onsets` are the runs confirmed by these
    frames (a run's start may lie in frames an earlier Activity carried).
    """

    start: int
    frame_hop: int
    probs: np.ndarray
    active: np.ndarray
    onsets: tuple[CryOnset, ...] = ()

    @property
    def end(self) -> int:
        """Sample index up to which cry activity is decided."""
        return self.start + len(self.probs) * self.frame_hop

    def last_active_end(self) -> int | None:
        """End of the newest cry frame in this span, if any."""
        hits = np.flatnonzero(self.active)
        return None if not len(hits) else self.start + (int(hits[-1]) + 1) * self.frame_hop


@dataclass(frozen=True)
class Window:
    """One gate decision over [start, start + WINDOW_SAMPLES), at most one per gate hop.

    `samples` is only filled when the window passed the gate: ungated windows still travel
    down the pipeline (so smoothing decays and episodes close on time) but carry no audio.
    """

    start: int
    active_fraction: float
    level_dbfs: float
    samples: np.ndarray | None = None

    @property
    def gated(self) -> bool:
        return self.samples is not None

    @property
    def end(self) -> int:
        return self.start + WINDOW_SAMPLES


@dataclass(frozen=True)
class Embedding:
    window: Window
    vector: np.ndarray | None  # None for an ungated window
    embedder_id: str


@dataclass(frozen=True)
class Prediction:
    """Class probabilities for one window; `raw` is None when the gate saw no cry."""

    window: Window
    classes: tuple[str, ...]
    raw: np.ndarray | None
    smoothed: np.ndarray

    def smoothed_dict(self) -> dict[str, float]:
        return {c: round(float(p), 4) for c, p in zip(self.classes, self.smoothed)}

    def raw_dict(self) -> dict[str, float] | None:
        if self.raw is None:
            return None
        return {c: round(float(p), 4) for c, p in zip(self.classes, self.raw)}


@dataclass(frozen=True)
class Event:
    """Something staff or the log care about.

    kind: window | episode_opened | episode_updated | episode_closed | alert_raised |
    alert_cleared | health. `time` is the sample index it refers to; `data` is JSON-ready.
    """

    kind: str
    time: int
    data: dict[str, Any] = field(default_factory=dict)
