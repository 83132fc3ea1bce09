"""What a detector frame is: its input features, the sample it stands for, and the run decision over frames.

Shared by the CRNN, the fusion and the gate, and importing none of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from monitor.messages import SAMPLE_RATE


@dataclass(frozen=True)
class FeatureSettings:
    """What the detector's input frames are; a model trained on other settings is refused."""

    sample_rate: int = SAMPLE_RATE
    frame_hop: int = 320  # 20 ms
    frame_length: int = 640  # 40 ms Hann window
    n_fft: int = 1024
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 8000.0

    @property
    def hop_s(self) -> float:
        return self.frame_hop / self.sample_rate


@dataclass(frozen=True)
class Decision:
    """Post-processing of frame probabilities, tuned on validation mixtures (never on test)."""

    on: float = 0.6  # a run of crying starts where the probability reaches this
    off: float = 0.4  # and lasts while it stays at or above this (hysteresis)
    min_on_s: float = 0.2  # a run shorter than this is not a cry onset (clicks, single barks)
    # A confirmed run starts at the earliest stretch above `off` reached over gaps shorter than this:
    # a first bout the detector half-believed belongs to the cry it announced (looked back 3 s at most).
    bridge_s: float = 0.0


FrameIndex = TypeVar("FrameIndex", int, np.ndarray)


def frame_time(frame: FrameIndex, features: FeatureSettings) -> FrameIndex:
    """The sample a frame's decision stands for: the hop at the centre of its analysis window."""
    return frame * features.frame_hop + (features.frame_length - features.frame_hop) // 2


class FrameStream(Protocol):
    """A detector's probability per frame for a stream fed in blocks of any size."""

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities for the frames that became final with these samples (possibly none)."""

    def flush(self) -> np.ndarray:
        """End of stream: the last probabilities."""
