"""Messages passed between pipeline stages.

Times inside the pipeline are absolute sample indices at SAMPLE_RATE; wall-clock time is
attached once, at the edge (store, bus).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Mapping

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
    frames (a run's start may lie in frames an earlier Activity carried). `pending_since`: after
    the last frame, the earliest start a run not yet confirmed may still be given (a confirmed
    run's start reaches back over its first frames and earlier bouts), None when none can come.
    """

    start: int
    frame_hop: int
    probs: np.ndarray
    active: np.ndarray
    onsets: tuple[CryOnset, ...] = ()
    pending_since: int | None = None
    # F0 in Hz per frame where the frame was crying when decided (NaN: not crying, or unvoiced); None: not tracked.
    # A run's first frames, marked crying only once it is confirmed, are not pitch-tracked.
    f0_hz: np.ndarray | None = None

    @property
    def end(self) -> int:
        """Sample index up to which cry activity is decided."""
        return self.start + len(self.probs) * self.frame_hop

    def last_active_end(self, before: int | None = None) -> int | None:
        """End of the newest cry frame in this span, if any (of those ending before sample `before`)."""
        active = self.active if before is None else self.active[: max(0, (before - self.start - 1) // self.frame_hop)]
        hits = np.flatnonzero(active)
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
    # Per alert class, this window's evidence for it (calibrated log-odds), only for a window the head calls crying.
    evidence: Mapping[str, float] = field(default_factory=dict)

    def smoothed_dict(self) -> dict[str, float]:
        return {c: round(float(p), 4) for c, p in zip(self.classes, self.smoothed)}

    def raw_dict(self) -> dict[str, float] | None:
        if self.raw is None:
            return None
        return {c: round(float(p), 4) for c, p in zip(self.classes, self.raw)}


# ---------------------------------------------------------------------------------------------
# Events: what staff, the log and the dashboards care about. `time` is the sample index an
# event refers to; wall-clock times are attached at the edge (service, bus). One class per
# kind; monitor/bus/pubsub.py gives each its wire name and is the only place that encodes them.


def type_probability(probs: Mapping[str, float | None], label: str) -> str:
    """An episode's mean probability of its own type for people to read, or "-" while no window has typed it."""
    p = probs.get(label)
    return "-" if p is None else f"{p:.2f}"


def duration(seconds: float | None, missing: str = "-") -> str:
    """A span of time for people to read, as every screen and page shows a spell's: m:ss, h:mm:ss from an hour on."""
    if seconds is None:
        return missing
    hours, rest = divmod(max(0, int(round(seconds))), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def percent(fraction: float | None) -> str:
    """A share for people to read, as screens show a spell's high-pitched share: "20 %", "-" when there is none."""
    return "-" if fraction is None else f"{fraction * 100:.0f} %"


@dataclass(frozen=True)
class SpellAlarm:
    """An alarm a crying spell raised: its kind (a cry type, crying, high_pitch) and when, in stream seconds."""

    kind: str
    raised_s: float
    priority: str = ""  # the alarm's priority when raised (an escalated one is raised again, higher)


@dataclass(frozen=True)
class EpisodeSummary:
    """A crying spell as known so far: bouts of crying joined across pauses shorter than [episodes] quiet_s.
    Timing and crying time come from detector frames, pitch from the crying frames, the type from the windows."""

    number: int  # within the run
    start_s: float  # the first cry frame
    end_s: float | None  # None while the spell is open
    last_s: float  # end of the newest cry frame
    detected_s: float  # when the detector had confirmed the onset
    label: str
    probs: dict[str, float]  # mean smoothed probability per class over its windows
    peak: dict[str, float]
    windows: int  # windows that typed it
    crying_s: float = 0.0  # seconds of cry frames (the pauses between bouts not counted)
    bouts: int = 0  # confirmed runs of crying
    voiced_s: float = 0.0  # crying frames with a pitch
    high_pitch_s: float = 0.0  # of those, frames with F0 above 1 kHz (hyperphonation)
    f0_median_hz: float | None = None  # median F0 of its voiced crying frames
    evidence: dict[str, float] = field(default_factory=dict)  # per alert class: its crying windows' mean, as a probability
    alarms: tuple[SpellAlarm, ...] = ()  # in the order raised
    start_time: str | None = None  # ISO 8601 wall clock, attached by the live driver
    end_time: str | None = None

    @property
    def ongoing(self) -> bool:
        return self.end_s is None

    @property
    def alerts(self) -> tuple[str, ...]:
        """The kinds of alarm it raised, each once, sorted."""
        return tuple(sorted({a.kind for a in self.alarms}))

    @property
    def length_s(self) -> float:
        """From the first cry frame to the newest (or the last, once closed)."""
        return round(self.last_s - self.start_s, 3)

    @property
    def high_pitch_share(self) -> float | None:
        """Share of its voiced crying that is above 1 kHz; None before any voiced frame."""
        return round(self.high_pitch_s / self.voiced_s, 3) if self.voiced_s > 0 else None

    def type_probability(self) -> str:
        return type_probability(self.probs, self.label)


@dataclass(frozen=True)
class WindowScored:
    """One 2 s window through the head and the smoother (ungated windows have raw None)."""

    time: int
    start_s: float
    level_dbfs: float
    activity: float
    gated: bool
    raw: dict[str, float] | None
    smoothed: dict[str, float]
    cry: float  # 1 - smoothed not_cry
    alerts: tuple[str, ...]  # alarms the open spell has raised, after this window
    evidence: dict[str, float] = field(default_factory=dict)  # a crying window's log-odds per alert class


@dataclass(frozen=True)
class WindowEmbedded:
    """A gated window's embedding, for the log only (`[store] log_embeddings`): never on the bus.
    A summary of the sound that a head can score again; the sound cannot be played back from it."""

    time: int
    start_s: float
    embedder_id: str
    vector: np.ndarray = field(compare=False)


@dataclass(frozen=True)
class _EpisodeChange:
    time: int
    episode: EpisodeSummary


@dataclass(frozen=True)
class EpisodeOpened(_EpisodeChange):
    """The detector confirmed a cry run: the episode starts at its first frame."""


@dataclass(frozen=True)
class EpisodeUpdated(_EpisodeChange):
    """A window typed it (or, for a closed one, a late alert marked it)."""


@dataclass(frozen=True)
class EpisodeClosed(_EpisodeChange):
    """Quiet for [episodes] quiet_s after its last cry frame, or the input ended."""


class Priority(str, Enum):
    """IEC 60601-1-8 alarm priorities, most urgent first."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        return ("high", "medium", "low").index(self.value)


@dataclass(frozen=True)
class AlertStarted:
    """A crying spell met an alarm's condition: a cry type's evidence, its crying time, its high-pitched crying
    (the cause behind a cry alarm; the alarm's lifecycle is monitor/alarms.py's). `priority`, when set, overrides
    the label's configured one: a cause already alarmed at a lower priority escalates."""

    time: int
    label: str
    probability: float | None  # a cry type's evidence, as a probability; None for crying and high pitch
    threshold: float
    episode: int | None  # the spell it belongs to
    message: str = ""  # what staff read; "" = "<LABEL> CRY"
    priority: Priority | None = None


@dataclass(frozen=True)
class AlertEnded:
    time: int
    label: str
    reason: str
    episode: int | None


@dataclass(frozen=True)
class Alarm:
    """One alarm's state: physiological (a cry type) or technical (a fault of the monitor)."""

    id: int  # unique within a run
    label: str  # cry type, or the technical condition (e.g. microphone_silent)
    technical: bool
    priority: Priority
    message: str
    raised_time: str  # ISO 8601 wall clock
    condition: bool  # the cause is still present
    latched: bool  # stays until acknowledged, even after its cause has gone
    episode: int | None = None
    probability: float | None = None
    acknowledged_by: str | None = None
    acknowledged_time: str | None = None
    silenced_until: str | None = None  # audio paused until then
    announcements: int = 1
    cleared_time: str | None = None

    @property
    def state(self) -> str:
        if self.cleared_time is not None:
            return "cleared"
        return "acknowledged" if self.acknowledged_by is not None else "active"


@dataclass(frozen=True)
class _AlarmChange:
    time: int
    alarm: Alarm  # its state after the change


@dataclass(frozen=True)
class AlarmRaised(_AlarmChange):
    """A cause started: a new alarm."""


@dataclass(frozen=True)
class AlarmAnnounced(_AlarmChange):
    """An unacknowledged alarm sounds again (its repeat interval or its audio pause ran out)."""


@dataclass(frozen=True)
class AlarmAcknowledged(_AlarmChange):
    """Staff acknowledged it (initials and time in the alarm)."""


@dataclass(frozen=True)
class AlarmSilenced(_AlarmChange):
    """Audio paused until alarm.silenced_until."""


@dataclass(frozen=True)
class AlarmCleared(_AlarmChange):
    reason: str = ""


@dataclass(frozen=True)
class ServiceStatus:
    """The service's lifecycle: started, stopped, failed (faults while running are technical alarms)."""

    time: int
    state: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Heartbeat:
    """Sent every `[bus] heartbeat_s`: the whole state a dashboard needs, so a late joiner catches up."""

    time: int
    health: str
    source: str
    detector: str
    embedder: str
    head: str
    classes: tuple[str, ...]
    control: str  # where to send acknowledgements (monitor/bus/control.py)
    alarms: tuple[Alarm, ...]
    unsupported_alert_classes: tuple[str, ...]
    episode: EpisodeSummary | None
    recent: tuple[EpisodeSummary, ...]
    overruns: int
    dropped_windows: int
    lag_s: float  # the stage furthest behind the newest audio, in audio seconds
    heard_s: float
    stage_lag_s: dict[str, float] = field(default_factory=dict)  # each stage's lag (gate, embedder, classifier)
    skipped_s: float = 0.0  # audio never judged: skipped so a stage that fell behind could catch up


AlarmEvent = AlarmRaised | AlarmAnnounced | AlarmAcknowledged | AlarmSilenced | AlarmCleared
EpisodeEvent = EpisodeOpened | EpisodeUpdated | EpisodeClosed
PipelineEvent = WindowScored | WindowEmbedded | EpisodeEvent | AlertStarted | AlertEnded
WireEvent = WindowScored | EpisodeEvent | AlarmEvent | ServiceStatus | Heartbeat
