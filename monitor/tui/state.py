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

    @property
    def urgency(self) -> tuple[int, int]:
        """Sort key, most urgent first: (acknowledged, priority rank) of its most urgent alarm.
        Anything unacknowledged comes before anything acknowledged; beds without alarms come last."""
        keys = [alarm_urgency(a.acknowledged_by, a.priority) for a in self.alarms]
        if self.silent:
            keys.append(alarm_urgency(self.silent_acknowledged_by, Priority.HIGH))
        return min(keys, default=(1, len(Priority)))


def alarm_urgency(acknowledged_by: str | None, priority: Priority) -> tuple[int, int]:
    """One alarm's sort key, most urgent first: unacknowledged before acknowledged, then by priority."""
    return int(acknowledged_by is not None), priority.rank


def _with_alarm(alarms: tuple[Alarm, ...], alarm: Alarm) -> tuple[Alarm, ...]:
    return tuple(a for a in alarms if a.id != alarm.id) + (alarm,)


def apply(view: BedView, envelope: Envelope) -> BedView:
    view = replace(view, last_time=envelope.time, silent=False, silent_acknowledged_by=None)
    match envelope.event:
        case Heartbeat() as beat:
            return replace(view, health=beat.health, source=beat.source, embedder=beat.embedder, head=beat.head,
                           control=beat.control, alarms=beat.alarms, episode=beat.episode,
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
        case AlarmRaised(alarm=alarm) | AlarmAnnounced(alarm=alarm) | AlarmAcknowledged(alarm=alarm) | \
                AlarmSilenced(alarm=alarm):
            return replace(view, alarms=_with_alarm(view.alarms, alarm))
        case AlarmCleared(alarm=alarm):
            return replace(view, alarms=tuple(a for a in view.alarms if a.id != alarm.id))
        case ServiceStatus(state="started"):
            return replace(view, health="ok")
        case ServiceStatus(state=state, detail=detail):
            return replace(view, health=f"monitor {state}: {detail.get('reason', '')}".strip(": "), alarms=())
    return view
