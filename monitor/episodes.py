"""Episode tracking: timing from the detector's frames, type from the head's windows.

Like Frigate's events: an episode starts on evidence (the first frame of a confirmed cry run),
is extended while crying goes on, ends `quiet_s` after the last cry frame, and is kept for
review. Its type is the mean of the head's smoothed probabilities over the windows that overlap
it. Windows reach the tracker later than frames (the embedder is slow), so an episode whose
quiet period is over waits for the windows that cover it before it closes, for at most
`_MAX_TYPE_WAIT_S`, and for a run the detector is still deciding that would continue it, for at
most `_MAX_PENDING_HOLD_S`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from monitor.config import EpisodeSettings
from monitor.messages import (
    NOT_CRY,
    SAMPLE_RATE,
    Activity,
    AlertEnded,
    AlertStarted,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeSummary,
    EpisodeUpdated,
    PipelineEvent,
    Prediction,
    seconds,
)

UNTYPED = "cry"  # the label of an episode no window has typed yet
_MAX_TYPE_WAIT_S = 20.0
# How long past its quiet period a run still being decided may hold an episode open. A run is
# confirmed at most 3 s after the start it is given (the gate's bridge looks back 3 s; all 222 runs
# of the development benchmark) unless one stretch between `off` and `on` lasts longer: this bounds that.
_MAX_PENDING_HOLD_S = 3.0


@dataclass
class Episode:
    number: int
    start: int  # sample index of the first cry frame
    end: int  # end of the last cry frame so far
    detected: int  # sample index by which the detector had confirmed the onset
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
        if not self.windows:
            return UNTYPED
        types = [i for i, c in enumerate(self.classes) if c != NOT_CRY]
        return self.classes[max(types, key=lambda i: self.mean[i])]

    def summary(self, open_: bool) -> EpisodeSummary:
        return EpisodeSummary(
            number=self.number, start_s=round(seconds(self.start), 3),
            end_s=None if open_ else round(seconds(self.end), 3), last_s=round(seconds(self.end), 3),
            detected_s=round(seconds(self.detected), 3), label=self.label,
            probs={c: round(float(p), 4) for c, p in zip(self.classes, self.mean)},
            peak={c: round(float(p), 4) for c, p in zip(self.classes, self.peaks)},
            windows=self.windows, alerts=tuple(sorted(self.alerts)))


class EpisodeTracker:
    def __init__(self, settings: EpisodeSettings, classes: tuple[str, ...]):
        self._quiet = int(settings.quiet_s * SAMPLE_RATE)
        self._max_wait = int(_MAX_TYPE_WAIT_S * SAMPLE_RATE)
        self._max_hold = int(_MAX_PENDING_HOLD_S * SAMPLE_RATE)
        self._classes = classes
        self._count = 0
        self._typed_to = 0  # end of the newest window classified
        self.current: Episode | None = None
        self._last_closed: Episode | None = None  # late windows may still belong to it
        # Closed by a new onset before the windows that type them came (frames reach the tracker before the
        # embedder's windows, far before when a file plays at speed 0): typed by those windows when they come.
        self._untyped: list[Episode] = []

    def observe(self, activity: Activity) -> list[PipelineEvent]:
        """Detector frames: open at a confirmed onset, extend on cry frames, close after the quiet period."""
        events: list[PipelineEvent] = []
        for onset in activity.onsets:
            # In order: the runs this span confirmed before this one extend the episode first (the batch
            # driver's 8 s spans hold several runs of one cry).
            self._extend(activity.last_active_end(before=onset.confirmed))
            if self.current is not None and onset.start - self.current.end >= self._quiet:
                events.append(self._close())
            if self.current is None:
                self._count += 1
                n = len(self._classes)
                self.current = Episode(self._count, onset.start, onset.start, onset.confirmed, self._classes,
                                       np.zeros(n), np.zeros(n))
                events.append(EpisodeOpened(onset.confirmed, self.current.summary(open_=True)))
        self._extend(activity.last_active_end())
        events.extend(self._close_if_over(activity.end, activity.pending_since))
        return events

    def _extend(self, last_cry_end: int | None) -> None:
        if self.current is not None and last_cry_end is not None:
            self.current.end = max(self.current.end, last_cry_end)

    def classify(self, prediction: Prediction, alert_events: list[AlertStarted | AlertEnded]) -> list[PipelineEvent]:
        """A typed window: it adds to the open episode it overlaps; alerts carry the number of the
        episode their window belongs to (a late window may belong to one a new onset has closed,
        whose summary is then published again, closed, with the alert)."""
        events: list[PipelineEvent] = []
        window = prediction.window
        self._typed_to = max(self._typed_to, window.end)
        ep = self.current
        owner = self._owner(window.start)
        candidates = (ep, owner if any(owner is e for e in self._untyped) else None)
        typed = next((e for e in candidates if e is not None and window.gated and window.start < e.end
                      and window.end > e.start), None)
        if typed is not None:
            typed.sums += prediction.smoothed
            typed.peaks = np.maximum(typed.peaks, prediction.smoothed)
            typed.windows += 1
            if typed is ep:
                events.append(EpisodeUpdated(window.end, typed.summary(open_=True)))
        closed_changed = typed if typed is not None and typed is not ep else None
        for alert in alert_events:
            events.append(replace(alert, episode=owner.number if owner else None))
            if isinstance(alert, AlertStarted) and owner is not None and alert.label not in owner.alerts:
                owner.alerts.add(alert.label)
                if owner is not ep:  # already closed: its summary changes after the fact
                    closed_changed = owner
        if closed_changed is not None:
            events.append(EpisodeUpdated(window.end, closed_changed.summary(open_=False)))
        # Typed up to its end, as an episode that closes on its quiet period waits to be.
        self._untyped = [e for e in self._untyped if self._typed_to < e.end]
        return events

    def _owner(self, start: int) -> Episode | None:
        """The open episode, unless the window began before it and inside a closed one: the oldest of those
        closed before they were typed, else the last closed."""
        if self.current is not None and start >= self.current.start:
            return self.current
        last = next((e for e in self._untyped if start < e.end), self._last_closed)
        if last is not None and start < last.end:
            return last
        return self.current

    def _close_if_over(self, now: int, pending_since: int | None) -> list[PipelineEvent]:
        ep = self.current
        if ep is None or now - ep.end < self._quiet:
            return []
        # A run not confirmed yet that would start within the quiet period continues this episode once
        # confirmed (its end stays the last confirmed cry frame): closing now would split one cry in two.
        if pending_since is not None and pending_since - ep.end < self._quiet and now - ep.end < self._quiet + self._max_hold:
            return []
        typed = self._typed_to >= ep.end or now - ep.end >= self._quiet + self._max_wait
        return [self._close()] if typed else []

    def finish(self) -> list[PipelineEvent]:
        """End of input (file end or shutdown): close what is open so nothing stays dangling."""
        return [self._close()] if self.current is not None else []

    def _close(self) -> EpisodeClosed:
        ep = self.current
        assert ep is not None
        self.current = None
        self._last_closed = ep
        if self._typed_to < ep.end:
            self._untyped.append(ep)
        return EpisodeClosed(ep.end, ep.summary(open_=False))
