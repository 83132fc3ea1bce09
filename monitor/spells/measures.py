"""What a spell accumulates besides time: the evidence for each alert class, and its pitch."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from monitor.detect.pitch import HYPERPHONATION_HZ

# Median F0 from a histogram (1/48 octave, 100 Hz - 3.2 kHz): constant memory however long a spell lasts,
# and within 0.8 % of the exact median.
_F0_BINS = np.geomspace(100.0, 3200.0, 5 * 48 + 1)


@overload
def logit(p: float) -> float: ...
@overload
def logit(p: np.ndarray) -> np.ndarray: ...
def logit(p: float | np.ndarray) -> float | np.ndarray:
    """Log-odds, p kept within [1e-6, 1 - 1e-6]: of a threshold (a float) or of the head's shares (an array)."""
    clipped = np.clip(p, 1e-6, 1 - 1e-6)
    odds = np.log(clipped / (1 - clipped))
    return float(odds) if np.ndim(odds) == 0 else odds


@dataclass
class TypeEvidence:
    """A spell's evidence for one cry type: the running mean of its crying windows' calibrated log-odds."""

    total: float = 0.0
    count: int = 0

    def add(self, log_odds: float) -> None:
        self.total += log_odds
        self.count += 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    @property
    def probability(self) -> float:
        return 1 / (1 + math.exp(-self.mean))


@dataclass(frozen=True)
class EvidenceRule:
    """A cry type is decided once at least `min_windows` crying windows have been typed and the lower bound
    of their mean log-odds, mean - margin / sqrt(n), reaches logit(`threshold`). A mean, not a count of windows
    over a threshold: a spell of another type, whose mean settles below the threshold, does not become likelier
    to alarm the longer it lasts, while a spell of this type only becomes more certain. The margin asks more of
    a few windows than of many (windows of one spell are not independent draws, so a few can mislead)."""

    threshold: float  # a probability
    min_windows: int
    margin: float = 0.0  # log-odds at one window, shrinking as 1/sqrt(n)

    def decides(self, evidence: TypeEvidence) -> bool:
        n = evidence.count
        return n >= self.min_windows and evidence.mean - self.margin / math.sqrt(n) >= logit(self.threshold)

    def decided_at(self, log_odds: np.ndarray) -> int | None:
        """The window (0-based) at which a spell with these windows' evidence is decided, or None: what `decides`
        says window by window, for a whole sequence at once (tuning scores thousands of spells)."""
        n = np.arange(1, len(log_odds) + 1)
        bound = np.cumsum(log_odds) / n - self.margin / np.sqrt(n)
        hits = np.flatnonzero((n >= self.min_windows) & (bound >= logit(self.threshold)))
        return int(hits[0]) if len(hits) else None


@dataclass
class PitchTally:
    """Voiced and high-pitched crying time, and a histogram for the median F0."""

    voiced_s: float = 0.0
    high_s: float = 0.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(len(_F0_BINS) + 1, np.int64))

    def add(self, f0_hz: np.ndarray, frame_s: float) -> None:
        """F0 of crying frames (NaN: unvoiced)."""
        voiced = f0_hz[np.isfinite(f0_hz)]
        if not len(voiced):
            return
        self.voiced_s += len(voiced) * frame_s
        self.high_s += int(np.count_nonzero(voiced > HYPERPHONATION_HZ)) * frame_s
        np.add.at(self.counts, np.searchsorted(_F0_BINS, voiced), 1)

    def median_hz(self) -> float | None:
        total = int(self.counts.sum())
        if not total:
            return None
        k = int(np.searchsorted(np.cumsum(self.counts), (total + 1) / 2))
        edges = np.concatenate([[_F0_BINS[0]], _F0_BINS, [_F0_BINS[-1]]])
        return float(np.sqrt(edges[k] * edges[k + 1]))  # the bin's geometric centre
