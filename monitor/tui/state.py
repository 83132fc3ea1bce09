"""What the dashboard knows about each bed, rebuilt from bus events (pure, no Textual)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from monitor.bus import Envelope
from monitor.messages import (
    Alarm,
    AlarmAcknowledged,
    AlarmAnnounced,
    AlarmCleared,
    AlarmRaised,
    AlarmSilenced,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeSummary,
    EpisodeUpdated,
    Heartbeat,
    Priority,
    ServiceStatus,
    WindowScored,
)

_RECENT = 10
NO_SIGNAL = "NO SIGNAL FROM MONITOR"
STOPPED = "MONITOR STOPPED"
STOPPED_PRIORITY = Priority.LOW  # a monitor stopped on purpose is a notice; one that just went quiet is NO SIGNAL (high)


@dataclass(frozen=True)
class BedView:
    bed: str
    health: str = "waiting for the monitor"
    source: str = ""
    embedder: str = ""
    head: str = ""
    control: str = ""  # the monitor's control endpoint, learnt from its heartbeat
    level_dbfs: float | None = None
    activity: float = 0.0
    cry: float = 0.0
    probs: dict[str, float] = field(default_factory=dict)
    alarms: tuple[Alarm, ...] = ()  # uncleared, as the monitor reports them
    unsupported: tuple[str, ...] = ()
    episode: EpisodeSummary | None = None  # the open episode, if any
    recent: tuple[EpisodeSummary, ...] = ()  # closed episodes, newest last
    last_time: str = ""
    silent: bool = False  # not heard from for the dashboard's limit: itself a technical alarm
    silent_acknowledged_by: str | None = None
    stopped: str | None = None  # why the monitor stopped on purpose (end of input, SIGTERM): a notice, not NO SIGNAL
    # Cry alarms nobody acknowledged before their monitor stopped (which clears them in its log): they stay
    # here until staff acknowledge them on the dashboard, however many runs later.
    left: tuple[Alarm, ...] = ()

    @property
    def urgency(self) -> tuple[int, int]:
        """Sort key, most urgent first: (acknowledged, priority rank) of its most urgent alarm.
        Anything unacknowledged comes before anything acknowledged; beds without alarms come last."""
        keys = [alarm_urgency(a.acknowledged_by, a.priority) for a in self.alarms + self.left]
        if self.silent:
            keys.append(alarm_urgency(self.silent_acknowledged_by, Priority.HIGH))
        if self.stopped is not None:
            keys.append(alarm_urgency(None, STOPPED_PRIORITY))
        return min(keys, default=(1, len(Priority)))


def alarm_urgency(acknowledged_by: str | None, priority: Priority) -> tuple[int, int]:
    """One alarm's sort key, most urgent first: unacknowledged before acknowledged, then by priority."""
    return int(acknowledged_by is not None), priority.rank


def _with_alarm(alarms: tuple[Alarm, ...], alarm: Alarm) -> tuple[Alarm, ...]:
    return tuple(a for a in alarms if a.id != alarm.id) + (alarm,)


def _ended_unanswered(alarm: Alarm) -> bool:
    """A cry alarm cleared although nobody acknowledged it and its cause had not gone unlatched: only a
    stopping monitor clears one like that (monitor/alarms.py, finish), and staff must still see it."""
    return not alarm.technical and alarm.acknowledged_by is None and (alarm.condition or alarm.latched)


def _identity(alarm: Alarm) -> tuple[int, str]:
    return alarm.id, alarm.raised_time  # ids are unique within one run of a monitor only


def _leave(view: BedView, alarms: tuple[Alarm, ...]) -> tuple[Alarm, ...]:
    """view.left plus those of `alarms` a stopping monitor ended unanswered."""
    kept = {_identity(a) for a in view.left}
    return view.left + tuple(a for a in alarms if _ended_unanswered(a) and _identity(a) not in kept)


def is_left(view: BedView, alarm: Alarm) -> bool:
    """Whether `alarm` (in whatever state it was seen) is one its stopped monitor left to this dashboard."""
    return any(_identity(a) == _identity(alarm) for a in view.left)


def without_left(view: BedView, alarm: Alarm) -> BedView:
    """Acknowledged on the dashboard: the stopped monitor that raised it cannot be told."""
    return replace(view, left=tuple(a for a in view.left if _identity(a) != _identity(alarm)))


def apply(view: BedView, envelope: Envelope) -> BedView:
    view = replace(view, last_time=envelope.time, silent=False, silent_acknowledged_by=None)
    match envelope.event:
        case Heartbeat() as beat:
            return replace(view, health=beat.health, stopped=None, source=beat.source, embedder=beat.embedder,
                           head=beat.head, control=beat.control, alarms=beat.alarms, episode=beat.episode,
                           unsupported=beat.unsupported_alert_classes,
                           recent=beat.recent[-_RECENT:] or view.recent)
        case WindowScored() as window:
            return replace(view, level_dbfs=window.level_dbfs, activity=window.activity, cry=window.cry,
                           probs=window.smoothed)
        case EpisodeOpened(episode=ep) | EpisodeUpdated(episode=ep) if ep.ongoing:
            return replace(view, episode=ep)
        case EpisodeUpdated(episode=ep):  # a closed one, updated late
            return replace(view, recent=tuple(ep if r.number == ep.number and r.start_s == ep.start_s else r
                                              for r in view.recent))
        case EpisodeClosed(episode=ep):
            return replace(view, episode=None, recent=(view.recent + (ep,))[-_RECENT:])
        case AlarmAcknowledged(alarm=alarm) if alarm.cleared_time is not None or is_left(view, alarm):
            # Acknowledged on a dashboard after its monitor stopped (and cleared it): no longer live anywhere.
            return without_left(view, alarm)
        case AlarmRaised(alarm=alarm) | AlarmAnnounced(alarm=alarm) | AlarmAcknowledged(alarm=alarm) | \
                AlarmSilenced(alarm=alarm):
            return replace(view, alarms=_with_alarm(view.alarms, alarm))
        case AlarmCleared(alarm=alarm):
            return replace(view, alarms=tuple(a for a in view.alarms if a.id != alarm.id),
                           left=_leave(view, (alarm,)))
        case ServiceStatus(state="started"):
            return replace(view, health="ok", stopped=None)
        case ServiceStatus(state="stopped" | "failed" as state, detail=detail):
            # Cleared by the stop, whether or not each AlarmCleared reached this dashboard.
            left = _leave(view, view.alarms)
            reason = str(detail.get("reason", ""))
            if state == "stopped":
                return replace(view, health=f"{STOPPED}: {reason}".strip(": "), stopped=reason, alarms=(), left=left)
            return replace(view, health=f"monitor failed: {reason}".strip(": "), alarms=(), left=left)
    return view
