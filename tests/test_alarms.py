"""Alarm lifecycle: priorities, acknowledgement, audio pause, latching, technical alarms, on fake clocks."""
from datetime import datetime

import pytest

from monitor.alarms import AlarmError, AlarmManager
from monitor.config import AlertSettings
from monitor.messages import (
    AlarmAcknowledged,
    AlarmAnnounced,
    AlarmCleared,
    AlarmRaised,
    AlarmSilenced,
    AlertEnded,
    AlertStarted,
    Priority,
)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def _manager(**settings):
    """The manager on one fake clock serving as both its monotonic and its wall clock."""
    clock = Clock()
    return AlarmManager(AlertSettings(**settings), clock, clock), clock


def _two_clocks(**settings):
    monotonic, wall = Clock(5_000.0), Clock()
    return AlarmManager(AlertSettings(**settings), monotonic, wall), monotonic, wall


def _names(events):
    return [type(e).__name__ for e in events]


def test_a_cry_alarm_has_its_priority_and_stays_latched_until_acknowledged():
    alarms, clock = _manager()
    [raised] = alarms.alert(AlertStarted(100, "pain", 0.81, 0.5, 4))
    assert isinstance(raised, AlarmRaised)
    alarm = raised.alarm
    assert (alarm.priority, alarm.state, alarm.episode, alarm.probability) == (Priority.HIGH, "active", 4, 0.81)
    assert alarms.alert(AlertStarted(200, "pain", 0.9, 0.5, 4)) == []  # the same cause: still one alarm
    assert alarms.alert(AlertEnded(300, "pain", "below threshold", 4)) == []  # latched: stays
    [still] = alarms.active
    assert still.condition is False and still.state == "active"
    clock.now += 5
    acknowledged, cleared = alarms.acknowledge(None, "ab", 400)
    assert isinstance(acknowledged, AlarmAcknowledged) and acknowledged.alarm.acknowledged_by == "AB"
    assert isinstance(cleared, AlarmCleared) and cleared.reason == "acknowledged by AB"
    assert cleared.alarm.state == "cleared" and alarms.active == ()


def test_the_crying_alarm_is_medium_and_escalates_to_a_new_high_alarm_staff_must_acknowledge_again():
    alarms, clock = _manager()
    [raised] = alarms.alert(AlertStarted(100, "crying", None, 30.0, 2, "CRYING"))
    assert (raised.alarm.priority, raised.alarm.message, raised.alarm.probability) == (Priority.MEDIUM, "CRYING", None)
    alarms.acknowledge(None, "ab", 150)  # acknowledged while the spell goes on: still raised, its cause present
    cleared, escalated = alarms.alert(AlertStarted(300, "crying", None, 300.0, 2, "CRYING FOR 5 MIN", Priority.HIGH))
    assert isinstance(cleared, AlarmCleared) and cleared.reason == "escalated to high"
    assert cleared.alarm.id == raised.alarm.id
    assert isinstance(escalated, AlarmRaised) and escalated.alarm.id != raised.alarm.id
    assert (escalated.alarm.priority, escalated.alarm.message, escalated.alarm.state) == \
        (Priority.HIGH, "CRYING FOR 5 MIN", "active")  # unacknowledged: the first acknowledgement was for less
    assert alarms.alert(AlertStarted(400, "crying", None, 30.0, 3, "CRYING")) == []  # a lower cause joins it
    assert [a.priority for a in alarms.active] == [Priority.HIGH]


def test_an_acknowledged_alarm_clears_when_its_cause_ends():
    alarms, _clock = _manager()
    alarms.alert(AlertStarted(0, "neurological", 0.7, 0.5, 1))
    [ack] = alarms.acknowledge(1, "CD", 10)
    assert ack.alarm.state == "acknowledged"
    [cleared] = alarms.alert(AlertEnded(20, "neurological", "below threshold", 1))
    assert isinstance(cleared, AlarmCleared) and cleared.reason == "below threshold"


def test_unlatched_alarms_clear_with_their_cause_and_priorities_come_from_config():
    alarms, _clock = _manager(latched=False, priorities={"pain": "medium"})
    [raised] = alarms.alert(AlertStarted(0, "pain", 0.7, 0.5, 1))
    assert raised.alarm.priority is Priority.MEDIUM
    assert _names(alarms.alert(AlertEnded(10, "pain", "below threshold", 1))) == ["AlarmCleared"]
    assert alarms.priority("hunger") is Priority.LOW and alarms.priority("something_else") is Priority.MEDIUM


def test_an_unacknowledged_alarm_announces_again_and_a_pause_delays_it():
    alarms, clock = _manager(repeat_s=30, pause_s=120)
    alarms.alert(AlertStarted(0, "pain", 0.8, 0.5, 1))
    clock.now += 29
    assert alarms.tick(1) == []
    clock.now += 1
    [again] = alarms.tick(2)
    assert isinstance(again, AlarmAnnounced) and again.alarm.announcements == 2
    [silenced] = alarms.silence(None, "ef", 3)
    assert isinstance(silenced, AlarmSilenced) and silenced.alarm.silenced_until is not None
    clock.now += 119
    assert alarms.tick(4) == []  # paused: no repeat inside the pause
    clock.now += 1
    [after_pause] = alarms.tick(5)
    assert isinstance(after_pause, AlarmAnnounced) and after_pause.alarm.silenced_until is None
    alarms.acknowledge(None, "EF", 6)
    clock.now += 1000
    assert alarms.tick(7) == []  # acknowledged alarms never announce again


def test_technical_alarms_are_latched_and_last_at_least_their_minimum():
    alarms, clock = _manager(technical_min_s=120)
    [raised] = alarms.fault("microphone_silent", True, 0, "nothing for 5.1 s")
    assert raised.alarm.technical and raised.alarm.priority is Priority.HIGH
    assert raised.alarm.message == "MICROPHONE SILENT: no audio is arriving: nothing for 5.1 s"
    clock.now += 10
    assert alarms.fault("microphone_silent", False, 10) == []  # gone, but not acknowledged
    assert _names(alarms.acknowledge(None, "GH", 11)) == ["AlarmAcknowledged"]  # acknowledged, but < 120 s
    clock.now += 110
    [cleared] = alarms.tick(12)
    assert isinstance(cleared, AlarmCleared) and cleared.reason == "fault gone"


def test_the_most_urgent_alarm_comes_first():
    alarms, clock = _manager(priorities={"hunger": "low"})
    alarms.alert(AlertStarted(0, "hunger", 0.9, 0.5, 1))
    clock.now += 1
    alarms.fault("microphone_silent", True, 1)
    assert [a.label for a in alarms.active] == ["microphone_silent", "hunger"]


def test_bad_requests_are_refused_with_a_reason():
    alarms, _clock = _manager()
    alarms.alert(AlertStarted(0, "pain", 0.8, 0.5, 1))
    with pytest.raises(AlarmError, match="no active alarm 9"):
        alarms.acknowledge(9, "AB", 1)
    for initials in ("", "  ", "1AB", "x" * 17, "a b"):
        with pytest.raises(AlarmError, match="is not staff initials"):
            alarms.acknowledge(None, initials, 1)


def test_stopping_clears_every_alarm_in_the_log():
    alarms, _clock = _manager()
    alarms.alert(AlertStarted(0, "pain", 0.8, 0.5, 1))
    alarms.fault("microphone_lost", True, 0)
    cleared = alarms.finish(5, "monitor stopped")
    assert _names(cleared) == ["AlarmCleared", "AlarmCleared"] and alarms.active == ()
    assert all(c.reason == "monitor stopped" and c.alarm.cleared_time for c in cleared)


def test_a_wall_clock_step_back_does_not_delay_the_repeat_of_an_unacknowledged_alarm():
    alarms, monotonic, wall = _two_clocks(repeat_s=30)
    [raised] = alarms.alert(AlertStarted(0, "pain", 0.8, 0.5, 1))
    wall.now -= 3600  # time sync corrects the PC's clock by an hour
    monotonic.now += 29
    wall.now += 29
    assert alarms.tick(1) == []
    monotonic.now += 1
    wall.now += 1
    [again] = alarms.tick(2)
    assert isinstance(again, AlarmAnnounced) and again.alarm.announcements == 2
    # staff read wall-clock times: the stamps follow the corrected clock
    [acknowledged] = alarms.acknowledge(None, "AB", 3)
    stamped = datetime.fromisoformat(acknowledged.alarm.acknowledged_time).timestamp()
    assert stamped == wall.now and datetime.fromisoformat(raised.alarm.raised_time).timestamp() == wall.now + 3600 - 30


def test_a_wall_clock_step_changes_neither_the_audio_pause_nor_the_technical_minimum():
    alarms, monotonic, wall = _two_clocks(pause_s=120, repeat_s=30, technical_min_s=120)
    alarms.alert(AlertStarted(0, "pain", 0.8, 0.5, 1))
    alarms.fault("microphone_silent", True, 0)
    alarms.silence(1, "CD", 1)
    alarms.fault("microphone_silent", False, 2)
    alarms.acknowledge(2, "CD", 3)
    wall.now += 7200  # a step forward would have ended both at once on the wall clock
    assert alarms.tick(4) == []
    monotonic.now += 120
    events = alarms.tick(5)
    assert _names(events) == ["AlarmAnnounced", "AlarmCleared"]  # the pause ended, the minimum passed


def test_a_reload_takes_new_priorities_and_a_shorter_repeat_at_once():
    alarms, monotonic, _wall = _two_clocks(repeat_s=30)
    alarms.alert(AlertStarted(0, "pain", 0.8, 0.5, 1))
    alarms.reconfigure(AlertSettings(repeat_s=10, priorities={"hunger": "high"}))
    monotonic.now += 10
    assert _names(alarms.tick(1)) == ["AlarmAnnounced"]
    [raised] = alarms.alert(AlertStarted(2, "hunger", 0.9, 0.5, 1))
    assert raised.alarm.priority is Priority.HIGH
