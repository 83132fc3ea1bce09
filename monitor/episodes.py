"""Episode tracking: a cry episode opens on the first cry window and closes after a quiet period.

Like Frigate's audio events: it starts on evidence, is updated while evidence lasts, ends after
`quiet_s` without any, and is kept for review.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from monitor.config import EpisodeSettings
from monitor.messages import NOT_CRY, SAMPLE_RATE, Event, Prediction, seconds


@dataclass
class Episode:
    number: int
    start: int  # sample index of the first cry window's start
    end: int  # end of the last cry window so far
    classes: tuple[str, ...]
    sums: np.ndarray
    peaks: np.ndarray
    windows: int = 0
    alerts: set[str] = field(default_factory=set)

    @property
    def mean(self) -> np.ndarray:
        return self.sums / max(self.windows, 1)

    @property
    def label(self) -> str:
        """The cry type with the highest mean probability (not_cry excluded: it is a cry episode)."""
        types = [i for i, c in enumerate(self.classes) if c != NOT_CRY]
        return self.classes[max(types, key=lambda i: self.mean[i])]

    def summary(self, open_: bool) -> dict:
        return {
            "episode": self.number,
            "start_s": round(seconds(self.start), 3),
            "end_s": None if open_ else round(seconds(self.end), 3),
            "last_s": round(seconds(self.end), 3),
            "label": self.label,
            "probs": {c: round(float(p), 4) for c, p in zip(self.classes, self.mean)},
            "peak": {c: round(float(p), 4) for c, p in zip(self.classes, self.peaks)},
            "windows": self.windows,
            "alert": bool(self.alerts),
            "alerts": sorted(self.alerts),
        }


class EpisodeTracker:
    def __init__(self, settings: EpisodeSettings):
        self._threshold = settings.cry_threshold
        self._quiet = int(settings.quiet_s * SAMPLE_RATE)
        self._count = 0
        self.current: Episode | None = None
        self.closed: list[Episode] = []

    def is_cry(self, prediction: Prediction) -> bool:
        cry = 1.0 - float(prediction.smoothed[prediction.classes.index(NOT_CRY)])
        return prediction.window.gated and cry >= self._threshold

    def update(self, prediction: Prediction, alert_events: list[Event]) -> list[Event]:
        events: list[Event] = []
        window = prediction.window
        if self.current is not None and not self.is_cry(prediction) and window.end - self.current.end >= self._quiet:
            events.append(self._close())
        if self.is_cry(prediction):
            if self.current is None:
                self._count += 1
                n = len(prediction.classes)
                self.current = Episode(self._count, window.start, window.end, prediction.classes,
                                       np.zeros(n), np.zeros(n))
                kind = "episode_opened"
            else:
                kind = "episode_updated"
            ep = self.current
            ep.end = max(ep.end, window.end)
            ep.sums += prediction.smoothed
            ep.peaks = np.maximum(ep.peaks, prediction.smoothed)
            ep.windows += 1
            events.append(Event(kind, window.end, ep.summary(open_=True)))
        for alert in alert_events:
            if alert.kind == "alert_raised" and self.current is not None:
                self.current.alerts.add(alert.data["label"])
            data = dict(alert.data, episode=self.current.number if self.current else None)
            events.append(Event(alert.kind, alert.time, data))
        return events

    def finish(self) -> list[Event]:
        """End of input (file end or shutdown): close what is open so nothing stays dangling."""
        return [self._close()] if self.current is not None else []

    def _close(self) -> Event:
        ep = self.current
        assert ep is not None
        self.current = None
        self.closed.append(ep)
        return Event("episode_closed", ep.end, ep.summary(open_=False))
