"""Crying spells: timing, crying time and pitch from the detector's frames, type from the head's windows.

Like Frigate's events: a spell starts on evidence (the first frame of a confirmed cry run), is
extended by every bout that starts within `quiet_s` of the last cry frame (an infant breathes, is
lifted, pauses), ends `quiet_s` after the last cry frame, and is kept for review. As it goes it keeps
running totals (crying seconds, bouts, typed windows, voiced and high-pitched frames, and per alert
class the evidence of its crying windows), and it raises each of its alarms once, when that alarm's
condition is met, and ends them when it ends:

- a cry type (pain) when the mean evidence of its crying windows, after at least `min_windows` of
  them, reaches the class's threshold: a long discomfort spell does not get more chances to alarm
  as pain the longer it lasts, and a pain spell only becomes more certain;
- crying, when its crying time reaches `[alerts] crying_s`, whatever the type, escalated to high
  priority when the spell is still going `[alerts] escalate_s` after it began;
- high_pitch, when its crying above 1 kHz reaches `[alerts] high_pitch_s`.

Windows reach the tracker later than frames (the embedder is slow), so a spell whose quiet period
is over waits for the windows that cover it before it closes, for at most `_MAX_TYPE_WAIT_S`, and
for a run the detector is still deciding that would continue it, for at most `_MAX_PENDING_HOLD_S`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from monitor.config import AlertSettings, EpisodeSettings
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
    Priority,
    SpellAlarm,
    Window,
    seconds,
)
from monitor.spells.measures import HYPERPHONATION_HZ, EvidenceRule, PitchTally, TypeEvidence

UNTYPED = "cry"  # the label of a spell no window has typed yet
CRYING = "crying"  # the alarm on crying itself, whatever its type
HIGH_PITCH = "high_pitch"  # the alarm on high-pitched (hyperphonated) crying
_MAX_TYPE_WAIT_S = 20.0
# How long past its quiet period a run still being decided may hold a spell open. A run is
# confirmed at most 3 s after the start it is given (the gate's bridge looks back 3 s; all 222 runs
# of the development benchmark) unless one stretch between `off` and `on` lasts longer: this bounds that.
_MAX_PENDING_HOLD_S = 3.0


@dataclass
class Spell:
    number: int
    start: int  # sample index of the first cry frame
    end: int  # end of the last cry frame so far
    detected: int  # sample index by which the detector had confirmed the onset
    classes: tuple[str, ...]
    sums: np.ndarray
    peaks: np.ndarray
    evidence: dict[str, TypeEvidence]
    windows: int = 0
    crying: int = 0  # samples of cry frames
    bouts: int = 0
    pitch: PitchTally = field(default_factory=PitchTally)
    alarms: list[SpellAlarm] = field(default_factory=list)

    def raised(self, kind: str) -> bool:
        return any(a.kind == kind for a in self.alarms)

    def alerts_raised(self) -> list[str]:
        """The kinds of alarm raised, each once, in the order first raised."""
        return list(dict.fromkeys(a.kind for a in self.alarms))

    @property
    def label(self) -> str:
        """The type its evidence decided (an alert class whose alarm it raised), else the cry type with the
        highest mean probability among those no evidence rule holds back; "cry" before any window."""
        if not self.windows:
            return UNTYPED
        mean = self.sums / self.windows
        decided = [c for c in self.evidence if self.raised(c)]
        candidates = decided or [c for c in self.classes if c != NOT_CRY and c not in self.evidence]
        if not candidates:
            candidates = [c for c in self.classes if c != NOT_CRY]
        return max(candidates, key=lambda c: mean[self.classes.index(c)])

    def summary(self, open_: bool) -> EpisodeSummary:
        mean = self.sums / max(self.windows, 1)
        median = self.pitch.median_hz()
        return EpisodeSummary(
            number=self.number, start_s=round(seconds(self.start), 3),
            end_s=None if open_ else round(seconds(self.end), 3), last_s=round(seconds(self.end), 3),
            detected_s=round(seconds(self.detected), 3), label=self.label,
            probs={c: round(float(p), 4) for c, p in zip(self.classes, mean)},
            peak={c: round(float(p), 4) for c, p in zip(self.classes, self.peaks)},
            windows=self.windows, crying_s=round(seconds(self.crying), 2), bouts=self.bouts,
            voiced_s=round(self.pitch.voiced_s, 2), high_pitch_s=round(self.pitch.high_s, 2),
            f0_median_hz=None if median is None else round(median, 1), alarms=tuple(self.alarms),
            evidence={c: round(e.probability, 3) for c, e in self.evidence.items() if e.count})


class SpellTracker:
    def __init__(self, settings: EpisodeSettings, alerts: AlertSettings, classes: tuple[str, ...],
                 rules: dict[str, EvidenceRule]):
        """`rules`: per alert class the head can type, how its evidence decides (monitor/spells/measures.py)."""
        self._quiet = int(settings.quiet_s * SAMPLE_RATE)
        self._max_wait = int(_MAX_TYPE_WAIT_S * SAMPLE_RATE)
        self._max_hold = int(_MAX_PENDING_HOLD_S * SAMPLE_RATE)
        self._classes = classes
        self._alerts = alerts
        self._rules = rules
        self._reloaded: tuple[AlertSettings, dict[str, EvidenceRule]] | None = None
        self._count = 0
        self._typed_to = 0  # end of the newest window classified
        self.current: Spell | None = None
        self._last_closed: Spell | None = None  # late windows may still belong to it
        # Closed by a new onset before the windows that type them came (frames reach the tracker before the
        # embedder's windows, far before when a file plays at speed 0): typed by those windows when they come.
        self._untyped: list[Spell] = []

    # -- settings ------------------------------------------------------------------------------
    def reconfigure(self, alerts: AlertSettings, rules: dict[str, EvidenceRule]) -> None:
        """New alert settings (SIGHUP), taken up by the thread that steps before its next frames or window."""
        self._reloaded = (alerts, rules)

    def _take_up_reload(self, time: int) -> list[PipelineEvent]:
        """Alarms the open spell raised stay; one whose class is no longer alerted on ends. A lowered
        crying_s or high_pitch_s applies to the open spell at its next frames, a threshold at its next window."""
        reloaded, self._reloaded = self._reloaded, None
        if reloaded is None:
            return []
        self._alerts, self._rules = reloaded
        spell = self.current
        if spell is None:
            return []
        events: list[PipelineEvent] = []
        for label in [c for c in spell.evidence if c not in self._rules]:
            del spell.evidence[label]
            if spell.raised(label):
                events.append(AlertEnded(time, label, "no longer an alert class (config reloaded)", spell.number))
        for label in self._rules:
            spell.evidence.setdefault(label, TypeEvidence())
        return events

    @property
    def active_alerts(self) -> list[str]:
        """The alarms the open spell has raised (their condition holds until it ends)."""
        return self.current.alerts_raised() if self.current is not None else []

    # -- frames --------------------------------------------------------------------------------
    def observe(self, activity: Activity) -> list[PipelineEvent]:
        """Detector frames: open at a confirmed onset, extend and count crying on cry frames, raise the crying
        and high-pitch alarms at the frame their time is reached, close after the quiet period."""
        events = self._take_up_reload(activity.start)
        hop = activity.frame_hop
        done = 0  # frames of this span already counted
        for onset in activity.onsets:
            # In order: the frames before the frame that confirmed this run belong to what was open before it
            # (the batch driver's 8 s spans hold several runs of one cry).
            confirming = max(done, (onset.confirmed - activity.start) // hop - 1)
            events += self._frames(activity, done, confirming)
            done = confirming
            if self.current is not None and onset.start - self.current.end >= self._quiet:
                events += self._close()
            if self.current is None:
                self._count += 1
                n = len(self._classes)
                self.current = Spell(self._count, onset.start, onset.start, onset.confirmed, self._classes,
                                     np.zeros(n), np.zeros(n), {c: TypeEvidence() for c in self._rules})
                events.append(EpisodeOpened(onset.confirmed, self.current.summary(open_=True)))
            spell = self.current
            spell.bouts += 1
            # The run's frames before the one that confirmed it are crying too (the gate marks them afterwards); its
            # start may reach back over earlier bouts (the detector's bridge), whose frames are counted already.
            spell.crying += max(0, onset.confirmed - hop - max(onset.start, spell.end))
            spell.end = max(spell.end, onset.confirmed - hop)
            events += self._check_crying(spell, onset.confirmed)
        events += self._frames(activity, done, len(activity.active))
        events += self._check_escalation(activity.end)
        events += self._close_if_over(activity.end, activity.pending_since)
        return events

    def _frames(self, activity: Activity, first: int, last: int) -> list[PipelineEvent]:
        """Frames [first, last) of the span: crying time, pitch and extent of the open spell."""
        spell = self.current
        if spell is None or last <= first:
            return []
        hop = activity.frame_hop
        active = activity.active[first:last]
        hits = np.flatnonzero(active)
        if not len(hits):
            return []
        spell.end = max(spell.end, activity.start + (first + int(hits[-1]) + 1) * hop)
        # The frame at which a time-based alarm's threshold is reached: its raised time is exact in any span size.
        crying_before, high_before = spell.crying, spell.pitch.high_s
        spell.crying += len(hits) * hop
        events: list[PipelineEvent] = []
        crying_s = self._alerts.crying_s
        if crying_s and not spell.raised(CRYING) and seconds(spell.crying) >= crying_s:
            needed = int(np.ceil((crying_s * SAMPLE_RATE - crying_before) / hop))
            frame = first + int(hits[max(0, needed - 1)])
            events += self._check_crying(spell, activity.start + (frame + 1) * hop)
        if activity.f0_hz is not None:
            f0 = activity.f0_hz[first:last]
            spell.pitch.add(f0, hop / SAMPLE_RATE)
            high_s = self._alerts.high_pitch_s
            if high_s and not spell.raised(HIGH_PITCH) and spell.pitch.high_s >= high_s:
                high_frames = np.flatnonzero(f0 > HYPERPHONATION_HZ)
                needed = int(np.ceil((high_s - high_before) * SAMPLE_RATE / hop))
                frame = first + int(high_frames[min(len(high_frames) - 1, max(0, needed - 1))])
                events += self._raise(spell, HIGH_PITCH, activity.start + (frame + 1) * hop, None, high_s,
                                      "HIGH-PITCHED CRY")
        return events

    def _check_crying(self, spell: Spell, time: int) -> list[PipelineEvent]:
        crying_s = self._alerts.crying_s
        if not crying_s or spell.raised(CRYING) or seconds(spell.crying) < crying_s:
            return []
        return self._raise(spell, CRYING, time, None, crying_s, "CRYING")

    def _check_escalation(self, now: int) -> list[PipelineEvent]:
        """A spell still going `escalate_s` after it began: its crying alarm again, at high priority."""
        spell, after = self.current, self._alerts.escalate_s
        if spell is None or not after or not spell.raised(CRYING):
            return []
        due = spell.start + int(after * SAMPLE_RATE)
        escalated = any(a.kind == CRYING and a.priority == Priority.HIGH.value for a in spell.alarms)
        # Still going at that moment: it had not been quiet for quiet_s by then.
        if escalated or now < due or spell.end + self._quiet <= due:
            return []
        raised = next(a for a in spell.alarms if a.kind == CRYING)
        minutes = after / 60
        length = f"{minutes:g} MIN" if minutes >= 1 else f"{after:g} S"
        return self._raise(spell, CRYING, max(due, int(raised.raised_s * SAMPLE_RATE)), None, after,
                           f"CRYING FOR {length}", Priority.HIGH)

    def _raise(self, spell: Spell, kind: str, time: int, probability: float | None, threshold: float, message: str,
               priority: Priority | None = None) -> list[PipelineEvent]:
        spell.alarms.append(SpellAlarm(kind, round(seconds(time), 3), priority.value if priority else ""))
        started = AlertStarted(time, kind, probability, threshold, spell.number, message, priority)
        if spell is self.current:
            return [started, EpisodeUpdated(time, spell.summary(open_=True))]
        # Already closed (a late window decided it): its summary changes after the fact, and its condition is over.
        return [started, AlertEnded(time, kind, "spell had ended", spell.number),
                EpisodeUpdated(time, spell.summary(open_=False))]

    # -- windows -------------------------------------------------------------------------------
    def classify(self, prediction: Prediction) -> list[PipelineEvent]:
        """A typed window adds to the spell it belongs to; its evidence may decide the spell's type."""
        events = self._take_up_reload(prediction.window.start)
        window = prediction.window
        self._typed_to = max(self._typed_to, window.end)
        spell = self._owner(window)
        self._untyped = [s for s in self._untyped if self._typed_to < s.end]  # typed up to their end from now on
        if spell is None or not window.gated:
            return events
        spell.sums += prediction.smoothed
        spell.peaks = np.maximum(spell.peaks, prediction.smoothed)
        spell.windows += 1
        decided = []
        for label, z in prediction.evidence.items():
            evidence = spell.evidence.get(label)
            if evidence is None:
                continue
            evidence.add(z)
            rule = self._rules[label]
            if not spell.raised(label) and rule.decides(evidence):
                decided.append((label, rule))
        for label, rule in decided:
            events += self._raise(spell, label, window.end, round(spell.evidence[label].probability, 4), rule.threshold,
                                  f"{label.upper()} CRY")
        if not decided:
            events.append(EpisodeUpdated(window.end, spell.summary(open_=spell is self.current)))
        return events

    def _owner(self, window: Window) -> Spell | None:
        """The open spell the window overlaps, unless the window began before it and inside a closed one: the
        oldest of those closed before they were typed, else the last closed (frames run ahead of the embedder:
        new onsets may close spells before their last windows are typed)."""
        current = self.current
        if current is None or window.start < current.start:
            closed = next((s for s in self._untyped if window.start < s.end), self._last_closed)
            if closed is not None and window.start < closed.end:
                return closed
        if current is not None and window.start < current.end and window.end > current.start:
            return current
        return None

    # -- closing -------------------------------------------------------------------------------
    def _close_if_over(self, now: int, pending_since: int | None) -> list[PipelineEvent]:
        spell = self.current
        if spell is None or now - spell.end < self._quiet:
            return []
        # A run not confirmed yet that would start within the quiet period continues this spell once
        # confirmed (its end stays the last confirmed cry frame): closing now would split one spell in two.
        if pending_since is not None and pending_since - spell.end < self._quiet \
                and now - spell.end < self._quiet + self._max_hold:
            return []
        typed = self._typed_to >= spell.end or now - spell.end >= self._quiet + self._max_wait
        return self._close() if typed else []

    def finish(self) -> list[PipelineEvent]:
        """End of input (file end or shutdown): close what is open so nothing stays dangling."""
        return self._close() if self.current is not None else []

    def _close(self) -> list[PipelineEvent]:
        """The spell ends, and with it the condition of every alarm it raised."""
        spell = self.current
        assert spell is not None
        self.current = None
        self._last_closed = spell
        if self._typed_to < spell.end:
            self._untyped.append(spell)
        ended: list[PipelineEvent] = [AlertEnded(spell.end, kind, "spell ended", spell.number)
                                      for kind in spell.alerts_raised()]
        return [*ended, EpisodeClosed(spell.end, spell.summary(open_=False))]
