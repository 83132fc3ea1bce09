"""Snapshot tests (pytest-textual-snapshot) of the unit dashboard and the review screen, fed canned
typed events, at the smallest bedside terminal (80x24) and a unit's wall screen (160x48).

Update after an intended change of the screens: pytest tests/test_tui_snapshots.py --snapshot-update
(then look at the SVGs in tests/__snapshots__/ before committing them).
"""
from dataclasses import replace
from datetime import timedelta

import pytest

from monitor.bus import Envelope
from monitor.messages import (
    Alarm,
    AlarmAcknowledged,
    AlarmCleared,
    AlarmRaised,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeSummary,
    Heartbeat,
    Priority,
    ServiceStatus,
    SpellAlarm,
    WindowScored,
)
from monitor.store import EpisodeFilter, StoreWriter, annotate, open_engine
from monitor.tui import app as app_module
from monitor.tui.app import BusMessage, CryWatchApp
from monitor.tui.review import ReviewApp
from tests.test_store import T0, _window

SIZES = [(80, 24), (160, 48)]
CLASSES = ("not_cry", "pain", "hunger")


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def _alarm(id_: int, label: str, priority: Priority, **changes) -> Alarm:
    technical = label.startswith("microphone")
    message = "MICROPHONE SILENT: no audio is arriving" if technical else f"{label.upper()} CRY"
    return replace(Alarm(id_, label, technical, priority, message, _at(60), True, True,
                         episode=None if technical else 1, probability=None if technical else 0.83), **changes)


def _episode(n: int, start: float, end: float | None, label: str = "pain", alerts=("pain",)) -> EpisodeSummary:
    return EpisodeSummary(n, start, end, end or start + 8, start + 0.5, label, {"not_cry": 0.2, "pain": 0.62, "hunger": 0.18},
                          {"pain": 0.9}, 4, crying_s=7.0, bouts=3, voiced_s=6.0, high_pitch_s=1.2, f0_median_hz=510.0,
                          alarms=tuple(SpellAlarm(kind, start + 5) for kind in alerts), start_time=_at(start),
                          end_time=None if end is None else _at(end))


def _beat(alarms=(), episode=None, recent=()) -> Heartbeat:
    return Heartbeat(16_000 * 90, "ok", "microphone 'NICU bedside mic'", "cry-detector-v1@0123456789", "acoustic-v2",
                     "acoustic-v2", CLASSES, "tcp://127.0.0.1:5600", tuple(alarms), ("neurological",), episode,
                     tuple(recent), 0, 0, 0.2, 90.0)


BEDS = {
    "bed-1": [_beat([_alarm(1, "pain", Priority.HIGH)], _episode(2, 50, None)),  # active, unacknowledged
              WindowScored(0, 58.0, -24.0, 0.9, True, {"not_cry": 0.1, "pain": 0.8, "hunger": 0.1},
                           {"not_cry": 0.2, "pain": 0.62, "hunger": 0.18}, 0.8, ("pain",))],
    "bed-2": [_beat([_alarm(1, "pain", Priority.HIGH, acknowledged_by="AB", acknowledged_time=_at(75))],
                    recent=[_episode(1, 20, 40)])],  # acknowledged
    "bed-3": [_beat([_alarm(1, "hunger", Priority.LOW, silenced_until=_at(200))],
                    recent=[_episode(1, 30, 44, "hunger", ("hunger",))])],  # audio paused
    "bed-4": [_beat()],  # goes stale
    "bed-5": [_beat([_alarm(1, "microphone_silent", Priority.HIGH)])],  # technical
}


@pytest.fixture(autouse=True)
def _fixed_clock_and_no_timeouts(monkeypatch, utc_timezone):
    monkeypatch.setattr(app_module, "SILENT_AFTER_S", 1e9)  # staleness is set explicitly below


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_unit_dashboard(snap_compare, size):
    endpoints = [f"tcp://127.0.0.1:{5601 + i}" for i in range(len(BEDS))]
    app = CryWatchApp(endpoints)

    async def feed(pilot) -> None:
        for endpoint, (bed, events) in zip(endpoints, BEDS.items()):
            for event in events:
                app.post_message(BusMessage(endpoint, Envelope(bed, _at(90), event)))
        await pilot.pause()
        app.beds["bed-4"] = replace(app.beds["bed-4"], silent=True)
        app.render_state()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=feed)


STOPPED_BEDS = {
    # The input ended while a pain alarm was unacknowledged: the monitor cleared it in its log as it stopped.
    "bed-1": [_beat([_alarm(1, "pain", Priority.HIGH)], recent=[_episode(1, 20, 40)]),
              AlarmCleared(0, replace(_alarm(1, "pain", Priority.HIGH), cleared_time=_at(90)), "monitor stopped"),
              ServiceStatus(0, "stopped", {"reason": "end of input"})],
    "bed-2": [_beat(), ServiceStatus(0, "stopped", {"reason": "SIGTERM"})],  # stopped by systemd, nothing pending
    "bed-3": [_beat()],  # running
}


def test_unit_dashboard_with_stopped_monitors(snap_compare):
    endpoints = [f"tcp://127.0.0.1:{5611 + i}" for i in range(len(STOPPED_BEDS))]
    app = CryWatchApp(endpoints)

    async def feed(pilot) -> None:
        for endpoint, (bed, events) in zip(endpoints, STOPPED_BEDS.items()):
            for event in events:
                app.post_message(BusMessage(endpoint, Envelope(bed, _at(90), event)))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZES[0], run_before=feed)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_review_screen(snap_compare, size, tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'log.db'}")
    writer = StoreWriter(engine, "run-1", "bed-7", "microphone 'test'", "acoustic-v2", "acoustic-v2",
                         lambda s: T0 + timedelta(seconds=s))
    first, second = _episode(1, 2, 4, "hunger", ()), replace(_episode(2, 30, 37, alerts=("pain", "crying")), crying_s=5.6)
    pain = replace(_alarm(1, "pain", Priority.HIGH), raised_time=_at(35), episode=2)
    crying = replace(_alarm(2, "crying", Priority.MEDIUM), message="CRYING", raised_time=_at(36), episode=2,
                     probability=None)
    events = [EpisodeOpened(0, replace(first, end_s=None)), _window(2, True), EpisodeClosed(0, first),
              EpisodeOpened(0, replace(second, end_s=None)), AlarmRaised(0, pain), AlarmRaised(0, crying),
              AlarmAcknowledged(0, replace(pain, acknowledged_by="AB", acknowledged_time=_at(40)))]
    pain = (0.3, 0.55, 0.7, 0.8, 0.75, 0.6)
    events += [WindowScored(0, 30.0 + i, -22.0, 0.5 + p / 2, True, {"pain": p}, {"not_cry": 0.9 - p, "pain": p,
                                                                                  "hunger": 0.1}, p, ())
               for i, p in enumerate(pain)] + [EpisodeClosed(0, second)]
    writer.write([Envelope("bed-7", _at(0), e) for e in events])
    annotate(engine, 1, "not_cry", "AB", "kettle", when=T0 + timedelta(hours=1))
    assert snap_compare(ReviewApp(engine, EpisodeFilter(), export_dir=tmp_path), terminal_size=size)
