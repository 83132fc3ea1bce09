"""Alarm lifecycle in IEC 60601-1-8's vocabulary: priority, active -> acknowledged -> cleared,
audio paused, latching.

A cry alarm's cause is a crying spell's alarm condition (AlertStarted/AlertEnded: a cry type decided on
its evidence, crying that goes on, high-pitched crying); one raised again at a higher priority escalates (the
lower alarm clears, a new one is raised, to be acknowledged anew). A technical
alarm's cause is a fault the service detects (microphone silent, a stage failed, ...). An
unacknowledged alarm announces again every `repeat_s`; silencing it pauses that for `pause_s`.
A latched alarm stays after its cause has gone until someone acknowledges it; technical alarms
are always latched and last at least `technical_min_s`, so a short fault is still seen.

Those durations run on the monotonic clock, which no time-sync step moves; the wall clock only
stamps the times staff read (raised, acknowledged, paused until, cleared).

Several threads report causes and acknowledgements (classifier, supervisor, control channel):
every method takes the lock and returns the events to publish.
"""
from __future__ import annotations

import logging
import re
import threading
import time as _time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Callable

from monitor.config import AlertSettings
from monitor.messages import (
    Alarm,
    AlarmAcknowledged,
    AlarmAnnounced,
    AlarmCleared,
    AlarmEvent,
    AlarmRaised,
    AlarmSilenced,
    AlertEnded,
    AlertStarted,
    Priority,
)

_LOGGER = logging.getLogger(__name__)

DEFAULT_PRIORITIES = {
    "pain": Priority.HIGH, "neurological": Priority.HIGH, "hunger": Priority.LOW,
    # crying itself, whatever its type, and high-pitched crying: medium (a crying alarm escalates to high on its own)
    "crying": Priority.MEDIUM, "high_pitch": Priority.MEDIUM,
    # technical: a monitor that cannot hear is as urgent as the cry it would miss
    "microphone_silent": Priority.HIGH, "microphone_lost": Priority.HIGH, "monitor_failed": Priority.HIGH,
    "bad_audio": Priority.HIGH, "stage_hung": Priority.HIGH, "microphone_muted": Priority.HIGH,
    "monitor_behind": Priority.HIGH,
    "log_failing": Priority.MEDIUM,  # alerting goes on; only the record is at risk
    "disk_nearly_full": Priority.LOW,
    "embedding_server_down": Priority.MEDIUM,  # cries are still typed, by the offline fallback
}
TECHNICAL_MESSAGES = {
    "microphone_silent": "MICROPHONE SILENT: no audio is arriving",
    "microphone_lost": "MICROPHONE LOST: the input device stopped",
    "monitor_failed": "MONITOR FAILED",
    "microphone_muted": "MICROPHONE MUTED: only digital silence is arriving",
    "bad_audio": "BAD AUDIO: the input delivers NaN/Inf samples (set to silence)",
    "stage_hung": "MONITOR STUCK: a processing stage stopped (systemd will restart the service)",
    "monitor_behind": "MONITOR BEHIND: cries are judged late, and audio is skipped to catch up",
    "log_failing": "LOG NOT WRITING: events are kept in memory until the database takes them again",
    "disk_nearly_full": "DISK NEARLY FULL: the log will soon stop being written",
    "embedding_server_down": "EMBEDDING SERVER DOWN: cries are typed by the offline fallback meanwhile",
}
_INITIALS = re.compile(r"[A-Za-z][A-Za-z0-9.\-]{0,15}")


class AlarmError(ValueError):
    """A request about alarms that cannot be carried out (unknown alarm, bad initials)."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


class AlarmManager:
    def __init__(self, settings: AlertSettings, clock: Callable[[], float] = _time.monotonic,
                 wall: Callable[[], float] = _time.time):
        self._settings = settings
        self._clock = clock  # durations: repeat, audio pause, technical minimum
        self._wall = wall  # the times staff read
        self._lock = threading.Lock()
        self._alarms: dict[int, Alarm] = {}  # not yet cleared
        self._raised_at: dict[int, float] = {}
        self._next_announcement: dict[int, float] = {}
        self._silenced_until: dict[int, float] = {}
        self._count = 0

    def priority(self, label: str) -> Priority:
        configured = self._settings.priorities.get(label)
        return Priority(configured) if configured else DEFAULT_PRIORITIES.get(label, Priority.MEDIUM)

    @property
    def active(self) -> tuple[Alarm, ...]:
        """Uncleared alarms, most urgent first (priority, then unacknowledged, then oldest)."""
        with self._lock:
            return tuple(sorted(self._alarms.values(),
                                key=lambda a: (a.priority.rank, a.acknowledged_by is not None, a.id)))

    # -- causes --------------------------------------------------------------------------------
    def alert(self, event: AlertStarted | AlertEnded) -> list[AlarmEvent]:
        """A crying spell's alarm condition started (or escalated) or ended."""
        if isinstance(event, AlertStarted):
            return self._cause(event.label, True, event.time, technical=False,
                               message=event.message or f"{event.label.upper()} CRY", episode=event.episode,
                               probability=event.probability, priority=event.priority)
        return self._cause(event.label, False, event.time, technical=False, reason=event.reason)

    def fault(self, label: str, present: bool, time: int, detail: str = "") -> list[AlarmEvent]:
        """A technical condition (see TECHNICAL_MESSAGES) started or ended."""
        message = TECHNICAL_MESSAGES.get(label, label.replace("_", " ").upper())
        return self._cause(label, present, time, technical=True, message=f"{message}{': ' + detail if detail else ''}",
                           reason="fault gone")

    def _cause(self, label: str, present: bool, time: int, technical: bool, message: str = "",
               episode: int | None = None, probability: float | None = None, reason: str = "",
               priority: Priority | None = None) -> list[AlarmEvent]:
        with self._lock:
            now = self._clock()
            current = next((a for a in self._alarms.values() if a.label == label and a.technical == technical), None)
            priority = priority or self.priority(label)
            events: list[AlarmEvent] = []
            if present:
                if current is not None and current.priority.rank <= priority.rank:
                    self._alarms[current.id] = replace(current, condition=True)
                    return []
                if current is not None:  # escalated: the lower alarm gives way to a new one staff must acknowledge
                    events = self._cleared(current, time, f"escalated to {priority.value}")
                self._count += 1
                alarm = Alarm(id=self._count, label=label, technical=technical, priority=priority,
                              message=message, raised_time=iso(self._wall()), condition=True,
                              latched=technical or self._settings.latched, episode=episode, probability=probability)
                self._alarms[alarm.id] = alarm
                self._raised_at[alarm.id] = now
                self._next_announcement[alarm.id] = now + self._settings.repeat_s
                return [*events, AlarmRaised(time, alarm)]
            if current is None:
                return []
            alarm = replace(current, condition=False)
            self._alarms[alarm.id] = alarm
            return self._clear_if_done(alarm, time, now, reason)

    def _clear_if_done(self, alarm: Alarm, time: int, now: float, reason: str) -> list[AlarmEvent]:
        if alarm.condition or (alarm.latched and alarm.acknowledged_by is None):
            return []
        if alarm.technical and now - self._raised_at[alarm.id] < self._settings.technical_min_s:
            return []
        return self._cleared(alarm, time, reason)

    def _cleared(self, alarm: Alarm, time: int, reason: str) -> list[AlarmEvent]:
        del self._alarms[alarm.id]
        for table in (self._raised_at, self._next_announcement, self._silenced_until):
            table.pop(alarm.id, None)
        return [AlarmCleared(time, replace(alarm, cleared_time=iso(self._wall())), reason)]

    # -- staff -----------------------------------------------------------------------------------
    def acknowledge(self, alarm_id: int | None, by: str, time: int) -> list[AlarmEvent]:
        """Staff `by` (initials) acknowledge one alarm, or every unacknowledged one (alarm_id None)."""
        by = check_initials(by)
        with self._lock:
            now = self._clock()
            events: list[AlarmEvent] = []
            for alarm in self._chosen(alarm_id):
                if alarm.acknowledged_by is not None:
                    continue
                acknowledged = replace(alarm, acknowledged_by=by, acknowledged_time=iso(self._wall()),
                                       silenced_until=None)
                self._alarms[alarm.id] = acknowledged
                self._silenced_until.pop(alarm.id, None)
                events.append(AlarmAcknowledged(time, acknowledged))
                events += self._clear_if_done(acknowledged, time, now, f"acknowledged by {by}")
            return events

    @staticmethod
    def acknowledge_earlier(alarm: Alarm, by: str, time: int) -> list[AlarmEvent]:
        """Staff `by` acknowledged, on a dashboard, an alarm an earlier run of this bed left when it stopped (at the
        alarm's acknowledged_time): for the log, which finds that run's row, and the bus. AlarmError if malformed."""
        try:
            by = check_initials(by)
            if alarm.acknowledged_time is None:
                raise ValueError("it carries no acknowledged_time")
            for when in (alarm.raised_time, alarm.acknowledged_time):
                datetime.fromisoformat(when)  # the store parses them: a bad one must be refused here
        except ValueError as exc:
            raise AlarmError(f"acknowledgement of an earlier alarm refused: {exc}") from None
        _LOGGER.info("alarm %d of an earlier run (raised %s) was acknowledged by %s at %s after that run stopped",
                     alarm.id, alarm.raised_time, by, alarm.acknowledged_time)
        return [AlarmAcknowledged(time, replace(alarm, acknowledged_by=by))]

    def silence(self, alarm_id: int | None, by: str, time: int) -> list[AlarmEvent]:
        """Audio paused for `pause_s`: the alarm stays, and announces again then unless acknowledged."""
        check_initials(by)
        with self._lock:
            now = self._clock()
            events: list[AlarmEvent] = []
            for alarm in self._chosen(alarm_id):
                if alarm.acknowledged_by is not None:
                    continue
                until = now + self._settings.pause_s
                silenced = replace(alarm, silenced_until=iso(self._wall() + self._settings.pause_s))
                self._alarms[alarm.id] = silenced
                self._silenced_until[alarm.id] = until
                events.append(AlarmSilenced(time, silenced))
            return events

    def reconfigure(self, settings: AlertSettings) -> None:
        """New alarm settings (a reload): alarms raised from now on take the new priorities; a shorter
        repeat applies at once to those already active (an audio pause asked for runs its course)."""
        with self._lock:
            now = self._clock()
            self._settings = settings
            for alarm_id, due in self._next_announcement.items():
                self._next_announcement[alarm_id] = min(due, now + settings.repeat_s)

    def _chosen(self, alarm_id: int | None) -> list[Alarm]:
        if alarm_id is None:
            return list(self._alarms.values())
        if alarm_id not in self._alarms:
            raise AlarmError(f"no active alarm {alarm_id} (it may have cleared already)")
        return [self._alarms[alarm_id]]

    # -- time ------------------------------------------------------------------------------------
    def tick(self, time: int) -> list[AlarmEvent]:
        """Announce again what is due, end audio pauses, clear technical alarms whose minimum has passed."""
        with self._lock:
            now = self._clock()
            events: list[AlarmEvent] = []
            for alarm in list(self._alarms.values()):
                if alarm.acknowledged_by is None:
                    paused_until = self._silenced_until.get(alarm.id)
                    if paused_until is not None and now < paused_until:
                        continue
                    if paused_until is not None or now >= self._next_announcement[alarm.id]:
                        self._silenced_until.pop(alarm.id, None)
                        self._next_announcement[alarm.id] = now + self._settings.repeat_s
                        alarm = replace(alarm, silenced_until=None, announcements=alarm.announcements + 1)
                        self._alarms[alarm.id] = alarm
                        events.append(AlarmAnnounced(time, alarm))
                events += self._clear_if_done(alarm, time, now, "fault gone")
            return events

    def finish(self, time: int, reason: str) -> list[AlarmEvent]:
        """The service stops: every alarm is cleared in the log, with the reason."""
        with self._lock:
            events: list[AlarmEvent] = [AlarmCleared(time, replace(a, cleared_time=iso(self._wall())), reason)
                                        for a in self._alarms.values()]
            self._alarms.clear()
            return events


def check_initials(by: str) -> str:
    by = by.strip()
    if not _INITIALS.fullmatch(by):
        # Quoted in part: whatever arrives over the control channel ends up in the reply and the journal.
        shown = repr(by) if len(by) <= 20 else f"{by[:20]!r}... ({len(by)} characters)"
        raise AlarmError(f"{shown} is not staff initials: 1-16 letters, digits, '.' or '-', starting with a letter")
    return by.upper()
