"""The live service's fan-out: every event a monitor makes, to everything that hears of it.

A cry alert condition (AlertStarted/AlertEnded) is a cause, not a message: the alarm manager decides what
staff see. Every other event is stamped with its wall-clock time and goes to the log (all but heartbeats;
embedded windows only there), the bus, the pager (`[alerts] command`) and the caller's callback, in that
order. Called from several threads: only thread-safe queues and the locked alarm manager are touched.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from monitor.alarms import AlarmManager
from monitor.bus.notify import CommandNotifier
from monitor.bus.pubsub import Envelope
from monitor.config import AlertSettings
from monitor.messages import (
    AlarmEvent,
    AlarmRaised,
    AlertEnded,
    AlertStarted,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeUpdated,
    Heartbeat,
    PipelineEvent,
    WindowEmbedded,
    WindowScored,
    WireEvent,
    seconds,
)
from monitor.workers import DropOldestQueue

if TYPE_CHECKING:
    from monitor.messages import EpisodeSummary

_RECENT_EPISODES = 8


class Fanout:
    """`wall` turns stream seconds into wall-clock time; `to_log` and `to_bus` are the store's and the bus's
    queues. Counts what the run summary reports and keeps the recent episodes the heartbeat carries."""

    def __init__(self, bed: str, wall: Callable[[float], datetime], alarms: AlarmManager, to_log: DropOldestQueue,
                 to_bus: DropOldestQueue, alerts: AlertSettings, on_message: Callable[[Envelope], None] | None = None):
        self.bed, self._wall, self.alarms = bed, wall, alarms
        self._to_log, self._to_bus, self._on_message = to_log, to_bus, on_message
        # Held while the manager decides and its events are queued, so that events about one alarm
        # from different threads (classifier, supervisor, control) reach the log in the order decided.
        self._alarm_lock = threading.Lock()
        self._paging = (alerts.command, alerts.command_timeout_s)
        self.pager = CommandNotifier(alerts.command, alerts.command_timeout_s) if alerts.command else None
        self.recent: list[EpisodeSummary] = []
        self.windows = 0
        self.alerts = 0  # cry alarms raised

    def page_with(self, alerts: AlertSettings) -> None:
        """Reloaded alert settings: a changed command or timeout gets a pager of its own."""
        if (alerts.command, alerts.command_timeout_s) == self._paging:
            return
        old_pager, self._paging = self.pager, (alerts.command, alerts.command_timeout_s)
        self.pager = CommandNotifier(alerts.command, alerts.command_timeout_s) if alerts.command else None
        if self.pager is not None:
            self.pager.start()
        if old_pager is not None:
            old_pager.stop(timeout_s=0)  # it finishes what it was given in its own thread

    def emit_all(self, events: list[PipelineEvent] | list[AlarmEvent]) -> None:
        for event in events:
            self.emit(event)

    def alarm_events(self, decide: Callable[[], list[AlarmEvent]]) -> None:
        with self._alarm_lock:
            self.emit_all(decide())

    def emit(self, event: PipelineEvent | WireEvent) -> None:
        if isinstance(event, (AlertStarted, AlertEnded)):  # a cause; the alarm manager decides what staff see
            cause = event
            self.alarm_events(lambda: self.alarms.alert(cause))
            return
        if isinstance(event, WindowEmbedded):  # for the log only, never on the bus
            self._to_log.put(Envelope(self.bed, self._wall(seconds(event.time)).isoformat(), event))
            return
        match event:
            case WindowScored():
                self.windows += 1
            case AlarmRaised(alarm=alarm) if not alarm.technical:
                self.alerts += 1
            case EpisodeOpened(episode=ep) | EpisodeUpdated(episode=ep) | EpisodeClosed(episode=ep):
                stamped = self.with_wall_times(ep)
                event = replace(event, episode=stamped)
                if isinstance(event, EpisodeClosed):
                    self.recent = (self.recent + [stamped])[-_RECENT_EPISODES:]
                elif not ep.ongoing:  # a closed episode updated late
                    self.recent = [stamped if r.number == ep.number else r for r in self.recent]
        when = datetime.fromtimestamp(time.time(), tz=timezone.utc) if isinstance(event, Heartbeat) \
            else self._wall(seconds(event.time))
        envelope = Envelope(self.bed, when.isoformat(), event)
        if not isinstance(event, Heartbeat):
            self._to_log.put(envelope)
        self._to_bus.put(envelope)
        if self.pager is not None:
            self.pager.offer(envelope)
        if self._on_message is not None:
            self._on_message(envelope)

    def with_wall_times(self, episode: EpisodeSummary) -> EpisodeSummary:
        """Staff read clock times: attached here, at the edge, like every other wall-clock time."""
        end = episode.end_s
        return replace(episode, start_time=self._wall(episode.start_s).isoformat(),
                       end_time=None if end is None else self._wall(end).isoformat())
