"""The unit dashboard: a real Textual app (Pilot) on real sockets, and the real terminal (tmux)."""
import asyncio
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

import pytest
from textual.widgets import DataTable
from textual_plotext import PlotextPlot

from monitor.bus import Envelope, Publisher, Subscriber
from monitor.bus.control import OWN_SOCKET, ControlReply, ControlRequest, ControlServer, send_request
from monitor.messages import (
    Alarm,
    AlarmAcknowledged,
    AlarmRaised,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeSummary,
    Heartbeat,
    Priority,
    ServiceStatus,
)
from monitor.service import Service
from monitor.store import EpisodeFilter, StoreWriter, list_episodes, open_engine
from monitor.tui import app as app_module
from monitor.tui import widgets
from monitor.tui.app import CryWatchApp
from monitor.tui.review import ReviewApp, ReviewScreen
from monitor.tui.state import NO_SIGNAL
from monitor.tui.widgets import AlertBanner, BedTile, EpisodesTable
from tests.conftest import PROJECT_ROOT, crywatch_command, free_endpoint, run_crywatch
from tests.test_bus import ALARM, EPISODE
from tests.test_store import T0, _at, _envelope, _episode, _window


async def _wait_for(pilot, condition, seconds: float = 60.0) -> None:
    # Generous: a loaded CI machine stalled for seconds (its wall clock stepped 3.3 s) and a speed-4 episode
    # then took over 20 s to end; a condition that holds returns at once.
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "dashboard never reached the expected state"
        await pilot.pause(0.1)


def _text(widget) -> str:
    return str(widget.render())


def _tile(app, bed: str) -> BedTile:
    return next(t for t in app.query(BedTile) if t.name == bed)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _heartbeat(control: str, alarms=(), episode=None, recent=()) -> Heartbeat:
    return Heartbeat(16_000, "ok", "microphone 'test'", "det", "acoustic-v2", "head", ("not_cry", "pain"), control,
                     tuple(alarms), (), episode, tuple(recent), 0, 0, 0.1, 1.0)


def _scenario_service(settings, models, tmp_path, bed: str, speed: float) -> Service:
    """A real service on the demo's scenario, logging to a SQLite file in tmp_path."""
    return Service(settings.with_overrides(audio={"input": "scenario:nicu", "speed": speed},
                                           store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
                                           bus={"endpoint": free_endpoint()}, service={"bed": bed}), models=models)


def test_dashboard_shows_a_live_episode_from_a_running_service(settings, models, tmp_path):
    service = _scenario_service(settings, models, tmp_path, "bed-12", speed=4.0)
    runner = threading.Thread(target=service.run)

    async def scenario():
        app = CryWatchApp([service.bus_endpoint])
        async with app.run_test(size=(120, 40)) as pilot:
            runner.start()
            table = app.query_one(EpisodesTable)
            await _wait_for(pilot, lambda: any("ongoing" in str(c) for r in range(table.row_count)
                                               for c in table.get_row_at(r)))
            row = table.get_row_at(0)
            assert row[0] == "bed-12" and row[2] == "ongoing"
            assert re.fullmatch(r"\d\d:\d\d:\d\d", row[1])  # local clock time, not stream seconds
            tile = _tile(app, "bed-12")
            assert tile.border_title == "bed-12" and "spell 1 " in _text(tile)
            assert "not in this head: neurological" in _text(tile)  # shown as not detectable, not hidden
            await _wait_for(pilot, lambda: table.get_row_at(0)[2] != "ongoing")
            assert table.row_count == 1  # the same row was updated in place, not re-added
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        service.request_stop()
        runner.join(timeout=30)


def test_an_alarm_is_acknowledged_from_the_dashboard_and_a_silent_bed_is_flagged():
    """A stand-in monitor (real PUB and REP sockets): the dashboard rings and highlights the alarm,
    'a' + initials reaches the monitor's control channel; a second endpoint never answers."""
    endpoint, never = free_endpoint(), free_endpoint()
    publisher = Publisher(endpoint)
    requests = []
    server = ControlServer(OWN_SOCKET, lambda r: requests.append(r) or ControlReply(True))  # the default channel
    stop = threading.Event()

    def monitor():
        acknowledged = False
        while not stop.is_set():
            if requests and not acknowledged:
                acknowledged = True
            alarm = replace(ALARM, acknowledged_by="AB", acknowledged_time=_now()) if acknowledged else ALARM
            publisher.publish(Envelope("bed-4", _now(), _heartbeat(server.endpoint, [alarm], EPISODE)))
            if not acknowledged:
                publisher.publish(Envelope("bed-4", _now(), AlarmRaised(16_000, alarm)))
            server.serve_once(100)
            time.sleep(0.1)

    thread = threading.Thread(target=monitor)
    thread.start()

    async def scenario():
        app = CryWatchApp([endpoint, never])
        bells = []
        app.bell = lambda: bells.append(time.monotonic())
        async with app.run_test(size=(120, 40)) as pilot:
            banner = app.query_one(AlertBanner)
            await _wait_for(pilot, lambda: "bed-4" in app.beds, 10)
            # The heartbeat (which draws the banner) comes just before the AlarmRaised (which rings): wait for both.
            await _wait_for(pilot, lambda: "PAIN CRY" in _text(banner) and bells)
            assert banner.has_class("priority-high") and "UNACKNOWLEDGED" in _text(banner)
            assert _tile(app, "bed-4").has_class("priority-high")
            await pilot.press("a")
            await pilot.press("j", "d", "enter")
            await _wait_for(pilot, lambda: requests, 10)
            assert (requests[0].op, requests[0].by, requests[0].alarm) == ("acknowledge", "JD", ALARM.id)
            await _wait_for(pilot, lambda: "ack AB" in _text(banner), 10)
            # The endpoint that never answered is its own tile, flagged within the 3 s limit.
            await _wait_for(pilot, lambda: app.beds[never].silent, 5)
            assert "NO SIGNAL FROM MONITOR" in _text(_tile(app, never))
            assert [t.name for t in app.query(BedTile)][0] == never  # unacknowledged high first
            rang = len(bells)
            stop.set()
            await _wait_for(pilot, lambda: app.beds["bed-4"].silent, 10)  # 3 s after its last message, checked every 0.5 s
            assert "bed-4: HIGH NO SIGNAL FROM MONITOR" in _text(banner) and len(bells) > rang
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        stop.set()
        thread.join(timeout=10)
        publisher.close()
        server.close()


def test_the_episode_table_keeps_its_cursor_while_events_stream_in():
    endpoint = free_endpoint()
    publisher = Publisher(endpoint)

    def episode(n: int, end_s=10.0) -> EpisodeSummary:
        return replace(EPISODE, number=n, end_s=end_s, start_time=f"2026-11-27T08:0{n}:00+00:00",
                       end_time=None if end_s is None else f"2026-11-27T08:0{n}:30+00:00")

    async def scenario():
        app = CryWatchApp([endpoint])
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(EpisodesTable)
            recent = [episode(n) for n in range(1, 5)]
            while table.row_count < 4:
                publisher.publish(Envelope("bed-1", _now(), _heartbeat("tcp://127.0.0.1:1", recent=recent)))
                await pilot.pause(0.1)
            table.move_cursor(row=2)
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
            for _ in range(10):
                publisher.publish(Envelope("bed-1", _now(), _heartbeat("tcp://127.0.0.1:1", episode=episode(5, None),
                                                                       recent=recent)))
                await pilot.pause(0.05)
            await _wait_for(pilot, lambda: table.row_count == 5)
            assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key == key
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        publisher.close()


def _spell(crying_s: float, last_s: float, end_s: float | None = None) -> EpisodeSummary:
    """Spell 3 of bed-1, from 08:00:00: its crying time, its newest cry frame, its end once closed."""
    return replace(EPISODE, number=3, start_s=0.0, end_s=end_s, last_s=last_s, label="pain", probs={"pain": 0.44},
                   crying_s=crying_s, bouts=4, voiced_s=100.0, high_pitch_s=20.0, f0_median_hz=620.0,
                   start_time="2026-11-27T08:00:00+00:00", end_time=None if end_s is None else _now())


def test_the_tile_and_the_table_show_the_running_spell_packed_to_the_tile():
    """Two beds on 80 columns: half tiles, where the spell's crying time of its running length and its high-pitched
    share take lines of their own, no value wrapped away from its name; one bed: a whole row, one line. The table's
    crying column runs on in the spell's row."""
    endpoints = [free_endpoint(), free_endpoint()]
    publishers = [Publisher(e) for e in endpoints]
    start = widgets.clock("2026-11-27T08:00:00+00:00")

    async def scenario(beds: int, expected: list[str]):
        app = CryWatchApp(endpoints[:beds])
        async with app.run_test(size=(80, 24)) as pilot:
            table = app.query_one(EpisodesTable)
            while not (table.row_count and len(app.query(BedTile)) == beds):
                for bed, publisher in zip(("bed-1", "bed-2"), publishers[:beds]):
                    publisher.publish(Envelope(bed, _now(), _heartbeat("tcp://127.0.0.1:1", episode=_spell(160, 185))))
                await pilot.pause(0.1)
            tile = _tile(app, "bed-1")
            await _wait_for(pilot, lambda: _text(tile).splitlines()[2:] == expected)
            assert all(len(line) <= tile.content_size.width for line in _text(tile).splitlines())
            key = f"bed-1/{_spell(160, 185).start_time}"
            assert table.get_cell(key, "crying") == "2:40" and table.get_cell(key, "end") == "ongoing"
            rows = table.row_count
            publishers[0].publish(Envelope("bed-1", _now(), _heartbeat("tcp://127.0.0.1:1", episode=_spell(170, 200))))
            await _wait_for(pilot, lambda: table.get_cell(key, "crying") == "2:50")
            assert table.row_count == rows  # the same row, updated in place
            assert "crying 2:50 of 3:20" in _text(tile)
            await pilot.press("q")

    try:
        asyncio.run(scenario(2, [f"spell 3 {start} pain 0.44", "crying 2:40 of 3:05", "high-pitched 20 %"]))
        asyncio.run(scenario(1, [f"spell 3 {start} pain 0.44  crying 2:40 of 3:05, high-pitched 20 %"]))
    finally:
        for publisher in publishers:
            publisher.close()


def test_a_bad_endpoint_is_one_line_not_a_traceback():
    result = run_crywatch("tui", "--connect", "foo", timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "cannot connect to foo" in result.stderr


class _Terminal:
    """A command in a real terminal (tmux) of 80x24, the smallest a bedside PC is likely to have (pinned,
    not left to tmux); its exit status goes to `done`."""

    def __init__(self, command: list[str], done: Path):
        self.session, self.done = f"crywatch-test-{time.monotonic_ns()}", done
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", "80", "-y", "24", "-c", str(PROJECT_ROOT),
                        f"{' '.join(command)}; echo $? > {done}; sleep 60"], check=True)
        subprocess.run(["tmux", "set-option", "-t", self.session, "window-size", "manual"], check=True)
        subprocess.run(["tmux", "resize-window", "-t", self.session, "-x", "80", "-y", "24"], check=True)

    def screen(self, joined: bool = False) -> str:
        """What the terminal shows; joined: lines it wrapped joined again."""
        return subprocess.run(["tmux", "capture-pane", "-p", *(["-J"] if joined else []), "-t", self.session],
                              capture_output=True, text=True).stdout

    def wait_for(self, condition: Callable[[str], bool], seconds: float, joined: bool = False) -> str:
        deadline = time.monotonic() + seconds
        while not condition(shown := self.screen(joined)):
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        return shown

    def quit(self, until: str) -> str:
        """Presses q; the terminal once the command has exited and `until` is drawn (tmux draws a little later)."""
        subprocess.run(["tmux", "send-keys", "-t", self.session, "q"], check=True)
        return self.wait_for(lambda shown: self.done.exists() and until in shown, 30, joined=True)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


@contextmanager
def _terminal(command: list[str], done: Path) -> Iterator[_Terminal]:
    terminal = _Terminal(command, done)
    try:
        yield terminal
    finally:
        terminal.close()


def _control_endpoint(bus: str, seconds: float = 40) -> str:
    """A running monitor's control endpoint, from its heartbeat on the bus."""
    subscriber = Subscriber([bus])
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            received = subscriber.receive_from(timeout_ms=200)
            if received is not None and isinstance(received[1].event, Heartbeat):
                return received[1].event.control
    finally:
        subscriber.close()
    raise AssertionError(f"no heartbeat on {bus}")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")
def test_crywatch_run_draws_the_dashboard_in_a_real_terminal_and_logs_only_after_it(tmp_path):
    """The service logs a warning while the dashboard is up (a refused control request): not a character of
    it on the screen, yet it is in the terminal once the dashboard has closed. At the end of its input
    the monitor shows as stopped, and its unacknowledged crying alarm stays."""
    bus, done = free_endpoint(), tmp_path / "exit"
    command = crywatch_command("run", "--input", "scenario:nicu", "--speed", "4",
                               "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus", bus)
    with _terminal(command, done) as terminal:
        control = _control_endpoint(bus)
        shown = terminal.wait_for(lambda shown: "ongoing" in shown, 40)
        assert "CryWatch" in shown and "level" in shown and "dBFS" in shown and "spell 1 " in shown
        reply = send_request(control, ControlRequest("acknowledge", "QA", 999))
        assert not reply.ok and "999" in reply.error  # the monitor has logged its refusal by now
        shown = terminal.wait_for(lambda shown: "MONITOR STOPPED: end of input" in shown, 40)
        assert "MEDIUM CRYING" in shown and "monitor stopped" in shown and NO_SIGNAL not in shown
        assert "crywatch:" not in shown and "refused" not in shown, shown  # nothing logged over the screen
        subprocess.run(["tmux", "send-keys", "-t", terminal.session, "a"], check=True)  # as at the end of `make demo`
        terminal.wait_for(lambda shown: "initials" in shown.lower(), 10)
        subprocess.run(["tmux", "send-keys", "-t", terminal.session, "JD", "Enter"], check=True)
        terminal.wait_for(lambda shown: "MEDIUM CRYING" not in shown, 10)
        after = terminal.quit("  episode 1: ")
        assert done.read_text().strip() == "0"
        assert "crywatch: WARNING monitor.control: control request refused: " in after, after  # kept, not lost
        # What the dashboard held is written before the closing summary, never inside it (it once was).
        lines = after.splitlines()
        summary = next(i for i, line in enumerate(lines) if line.startswith("crywatch: stopped after"))
        assert lines[summary + 1].startswith("  episode 1: "), after
        assert any("(left by the stopped monitor) acknowledged by JD" in line for line in lines[:summary]), after


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")
def test_a_silent_monitor_on_crywatch_tui_is_flagged_on_screen_and_logged_after_it(tmp_path):
    """NO SIGNAL is logged (the journal keeps who was unmonitored when): never over the screen."""
    nobody, done = free_endpoint(), tmp_path / "exit"
    with _terminal(crywatch_command("tui", "--connect", nobody), done) as terminal:
        shown = terminal.wait_for(lambda shown: f"HIGH {NO_SIGNAL}" in shown, 30)
        assert "crywatch:" not in shown and "WARNING" not in shown, shown
        after = terminal.quit(f"monitor.tui.app: {nobody}: {NO_SIGNAL}")
        assert done.read_text().strip() == "0"
        assert f"crywatch: WARNING monitor.tui.app: {nobody}: {NO_SIGNAL}" in after, after


def test_review_shows_a_timeline_stores_annotations_and_exports(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'log.db'}")
    writer = StoreWriter(engine, "run-1", "bed-7", "microphone 'test'", "acoustic-v2", "head-a",
                         lambda s: T0 + timedelta(seconds=s))
    writer.write([_envelope(EpisodeOpened(38_400, _episode(None)))] + [_envelope(_window(s, True)) for s in (2, 3, 4)]
                 + [_envelope(EpisodeClosed(96_000, _episode(6.0, ("pain",))))])

    async def scenario():
        app = ReviewApp(engine, EpisodeFilter(), export_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            assert isinstance(screen, ReviewScreen)
            await _wait_for(pilot, lambda: screen.episodes)
            plt = screen.query_one(PlotextPlot).plt
            plt.plotsize(110, 20)
            drawn = re.sub(r"\x1b\[[0-9;]*m", "", plt.build())
            assert "spell 1: smoothed class probabilities" in drawn
            assert "pain" in drawn and "cry activity" in drawn and "seconds from the first window" in drawn
            await pilot.press("c")
            await pilot.press("j", "d", "space", "o", "k", "enter")
            await _wait_for(pilot, lambda: list_episodes(engine)[0]["review"] is not None)
            assert list_episodes(engine)[0]["review"]["verdict"] == "pain"
            assert list_episodes(engine)[0]["review"]["by"] == "JD" and list_episodes(engine)[0]["review"]["note"] == "ok"
            await pilot.press("e")
            await _wait_for(pilot, lambda: list(tmp_path.glob("crywatch-episodes-*.csv")))
            assert "JD" in next(tmp_path.glob("crywatch-episodes-*.csv")).read_text()
            await pilot.press("escape")

    asyncio.run(scenario())


def test_review_details_a_spell_and_counts_the_filtered_ones(tmp_path, utc_timezone):
    """A real log: a long pain spell of bed-1 that raised PAIN CRY, CRYING and, past escalate_s, CRYING FOR 5 MIN
    (acknowledged); a short one of bed-2 with no voiced crying. The detail box shows the highlighted spell's crying
    time of its length, bouts, pitch and alarms with their times; the summary line counts what the filter lists."""
    engine = open_engine(f"sqlite:///{tmp_path / 'log.db'}")
    writer = StoreWriter(engine, "run-1", "bed-1", "microphone 'test'", "acoustic-v2", "acoustic-v2",
                         lambda s: T0 + timedelta(seconds=s))
    long = _spell(crying_s=400.0, last_s=660.0, end_s=660.0)
    pain = Alarm(1, "pain", False, Priority.HIGH, "PAIN CRY", _at(35), True, True, episode=3, probability=0.8)
    crying = replace(pain, id=2, label="crying", priority=Priority.MEDIUM, message="CRYING", raised_time=_at(40),
                     probability=None)
    escalated = replace(crying, id=3, priority=Priority.HIGH, message="CRYING FOR 5 MIN", raised_time=_at(300))
    writer.write([_envelope(e) for e in (
        EpisodeOpened(0, replace(long, end_s=None)), AlarmRaised(0, pain), AlarmRaised(0, crying),
        AlarmRaised(0, escalated), EpisodeClosed(0, long),
        AlarmAcknowledged(0, replace(escalated, acknowledged_by="AB", acknowledged_time=_at(310))))])
    other = StoreWriter(engine, "run-2", "bed-2", "microphone 'test'", "acoustic-v2", "acoustic-v2",
                        lambda s: T0 + timedelta(seconds=1000 + s))
    short = replace(long, number=1, last_s=30.0, end_s=30.0, crying_s=20.0, bouts=1, voiced_s=0.0, high_pitch_s=0.0,
                    f0_median_hz=None, alarms=())
    other.write([_envelope(EpisodeOpened(0, replace(short, end_s=None))), _envelope(EpisodeClosed(0, short))])

    async def scenario(where: EpisodeFilter, summary: str, details: dict[int, list[str]]):
        app = ReviewApp(engine, where, export_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            assert isinstance(screen, ReviewScreen)
            await _wait_for(pilot, lambda: screen.episodes)
            assert _text(screen.query_one("#review-summary")) == summary and screen.sub_title == summary.split(":")[0]
            table = screen.query_one("#review-episodes", DataTable)
            for row in range(table.row_count):
                table.move_cursor(row=row)
                episode = screen.selected()
                assert episode is not None
                await _wait_for(pilot, lambda: f"spell {episode['id']}," in _text(screen.query_one("#review-detail")))
                assert _text(screen.query_one("#review-detail")).splitlines()[:len(details[episode["id"]])] == \
                    details[episode["id"]]
            await pilot.press("escape")

    ids = {ep["bed"]: ep["id"] for ep in list_episodes(engine)}
    long_lines = [f"spell {ids['bed-1']}, bed-1", "2026-11-27 08:00:00 to 08:11:00",
                  "crying 6:40 of 11:00 in 4 bouts", "PAIN CRY 08:00:35 high", "CRYING 08:00:40 medium",
                  "CRYING FOR 5 MIN 08:05:00 high, ack AB", "median F0 620 Hz, high-pitched 20 %", "pain 0.44, 2 windows"]
    short_lines = [f"spell {ids['bed-2']}, bed-2", "2026-11-27 08:16:40 to 08:17:10", "crying 0:20 of 0:30 in 1 bout",
                   "no voiced crying", "pain 0.44, 2 windows", "not reviewed: c, n or o"]
    asyncio.run(scenario(EpisodeFilter(), "2 spells: crying 7:00, 1 over 10 min, longest 11:00, high-pitched 0:20",
                         {ids["bed-1"]: long_lines, ids["bed-2"]: short_lines}))
    asyncio.run(scenario(EpisodeFilter(bed="bed-2"), "1 spell: crying 0:20, 0 over 10 min, longest 0:30, "
                         "high-pitched 0:00", {ids["bed-2"]: short_lines}))


def test_two_running_monitors_one_dashboard_and_the_acknowledgement_reaches_the_right_one(settings, models, tmp_path):
    services = [Service(settings.with_overrides(
        # At speed 2 the scenario plays on for ~20 s after its alarm: room to acknowledge before it
        # ends (its end clears every alarm) on a loaded 2-core machine; at 4 that margin was ~9 s.
        audio={"input": "scenario:nicu", "speed": 2.0}, store={"url": f"sqlite:///{tmp_path / f'{bed}.db'}"},
        bus={"endpoint": free_endpoint()}, service={"bed": bed}), models=models)  # control: each its own ipc socket
        for bed in ("bed-a", "bed-b")]
    runners = [threading.Thread(target=s.run) for s in services]

    def unacknowledged(app, bed: str) -> bool:
        view = app.beds.get(bed)
        return view is not None and any(a.acknowledged_by is None and not a.technical for a in view.alarms)

    async def scenario():
        app = CryWatchApp([s.bus_endpoint for s in services])
        async with app.run_test(size=(160, 48)) as pilot:
            for runner in runners:
                runner.start()
            await _wait_for(pilot, lambda: unacknowledged(app, "bed-a") and unacknowledged(app, "bed-b"), 60)
            await pilot.press("a")
            await pilot.press("a", "b", "enter")  # the most urgent: same priority, so bed-a (name order)
            await _wait_for(pilot, lambda: not unacknowledged(app, "bed-a"), 10)
            assert not any(a.acknowledged_by for a in app.beds["bed-b"].alarms)
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        for service, runner in zip(services, runners):
            service.request_stop()
            runner.join(timeout=30)
    acknowledged = {}
    for bed in ("bed-a", "bed-b"):
        with sqlite3.connect(tmp_path / f"{bed}.db") as conn:
            acknowledged[bed] = conn.execute("select acknowledged_by from alarms where technical = 0").fetchall()
    assert acknowledged["bed-a"][0] == ("AB",)
    assert acknowledged["bed-b"] and all(by is None for (by,) in acknowledged["bed-b"])


def _checks_after(app: CryWatchApp) -> list[float]:
    """When the app's silence check ran, from now on (to wait past the limit on a condition, not a sleep)."""
    ran: list[float] = []
    check = app.check_silent_monitors

    def counted() -> None:
        check()
        ran.append(time.monotonic())

    app.check_silent_monitors = counted  # type: ignore[method-assign]
    return ran


async def _wait_past_silence_limit(pilot, ran: list[float], since: float) -> None:
    await _wait_for(pilot, lambda: any(t > since + app_module.SILENT_AFTER_S for t in ran), 10)


def test_end_of_input_is_a_stop_not_no_signal_and_the_unacknowledged_crying_alarm_stays(settings, models, tmp_path,
                                                                                           monkeypatch):
    """The demo's scenario ends (a real service, as fast as it goes): the bed shows STOPPED with the reason,
    a low-priority notice that never turns into NO SIGNAL; its crying alarm nobody acknowledged stays on the
    banner (the monitor cleared it in its log when it stopped) until staff acknowledge it here."""
    monkeypatch.setattr(app_module, "SILENT_AFTER_S", 0.5)
    service = _scenario_service(settings, models, tmp_path, "bed-9", speed=0.0)
    runner = threading.Thread(target=service.run)

    async def scenario():
        app = CryWatchApp([service.bus_endpoint])
        ran = _checks_after(app)
        async with app.run_test(size=(120, 40)) as pilot:
            runner.start()
            await _wait_for(pilot, lambda: "bed-9" in app.beds and app.beds["bed-9"].stopped is not None, 60)
            stopped_at = time.monotonic()
            await _wait_past_silence_limit(pilot, ran, stopped_at)
            view, banner = app.beds["bed-9"], app.query_one(AlertBanner)
            assert view.stopped == "end of input" and not view.silent and not view.alarms
            assert [(a.label, a.acknowledged_by) for a in view.left] == [("crying", None)]
            shown = _text(banner)
            assert NO_SIGNAL not in shown and "bed-9: LOW MONITOR STOPPED: end of input" in shown
            assert "bed-9: MEDIUM CRYING since " in shown and "(UNACKNOWLEDGED, monitor stopped)" in shown
            assert banner.has_class("priority-medium")  # the crying alarm, not the notice, colours the banner
            assert "MONITOR STOPPED: end of input" in _text(_tile(app, "bed-9"))
            await pilot.press("a")
            await pilot.press("j", "d", "enter")
            await _wait_for(pilot, lambda: not app.beds["bed-9"].left, 10)
            assert "CRYING" not in _text(banner) and "MONITOR STOPPED" in _text(banner)
            assert banner.has_class("priority-low") and not app.beds["bed-9"].silent
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        service.request_stop()
        runner.join(timeout=30)
    with sqlite3.connect(tmp_path / "log.db") as conn:  # what the dashboard shows, the log says
        detail = conn.execute("select detail from service_events where kind = 'stopped'").fetchone()[0]
    assert '"reason": "end of input"' in detail


def test_a_sigtermed_monitor_shows_stopped_and_a_killed_one_no_signal(tmp_path, monkeypatch):
    """Two real monitors (`crywatch run --headless`, as systemd runs them): one stopped by SIGTERM shows
    STOPPED (SIGTERM), never NO SIGNAL; one killed outright says nothing and is the HIGH NO SIGNAL alarm."""
    monkeypatch.setattr(app_module, "SILENT_AFTER_S", 1.0)
    buses = {bed: free_endpoint() for bed in ("bed-term", "bed-kill")}
    processes = {bed: subprocess.Popen(crywatch_command("run", "--headless", "--input", "scenario:quiet", "--speed", "1",
                                                        "--bed", bed, "--db", f"sqlite:///{tmp_path / bed}.db",
                                                        "--bus", bus),
                                       cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for bed, bus in buses.items()}

    async def scenario():
        app = CryWatchApp(list(buses.values()))
        ran = _checks_after(app)
        async with app.run_test(size=(120, 40)) as pilot:
            await _wait_for(pilot, lambda: all(app.beds.get(bed) and app.beds[bed].health == "ok" for bed in buses), 90)
            processes["bed-term"].send_signal(signal.SIGTERM)
            processes["bed-kill"].kill()
            await _wait_for(pilot, lambda: app.beds["bed-term"].stopped is not None and app.beds["bed-kill"].silent, 30)
            await _wait_past_silence_limit(pilot, ran, time.monotonic())
            term, kill = app.beds["bed-term"], app.beds["bed-kill"]
            assert term.stopped == "SIGTERM" and not term.silent
            assert kill.stopped is None and kill.silent
            shown = _text(app.query_one(AlertBanner))
            assert f"bed-kill: HIGH {NO_SIGNAL}" in shown and "bed-term: LOW MONITOR STOPPED: SIGTERM" in shown
            assert f"bed-term: HIGH {NO_SIGNAL}" not in shown
            assert [t.name for t in app.query(BedTile)] == ["bed-kill", "bed-term"]  # the silent one first
            await pilot.press("q")

    try:
        asyncio.run(scenario())
        assert processes["bed-term"].wait(timeout=30) == 0
    finally:
        for process in processes.values():
            process.kill()
            process.wait()


def test_alarms_a_stopped_monitor_left_survive_a_lost_clear_and_its_restart():
    """Canned events on a real socket: the stop arrives without the AlarmCleared before it (a bus may drop
    events); the unacknowledged pain alarm is kept. The monitor starts again, numbering alarms from 1: its
    new alarm and the old one are both shown. A monitor that FAILED is not a stop: it is NO SIGNAL."""
    endpoint = free_endpoint()
    publisher = Publisher(endpoint)
    old, new = ALARM, replace(ALARM, raised_time=_now())  # same id, another run

    async def publish_until(pilot, event, condition) -> None:
        while not condition():
            publisher.publish(Envelope("bed-5", _now(), event))
            await pilot.pause(0.1)

    async def scenario():
        app = CryWatchApp([endpoint])
        async with app.run_test(size=(120, 40)) as pilot:
            await publish_until(pilot, _heartbeat("tcp://127.0.0.1:1", [old]), lambda: "bed-5" in app.beds)
            await publish_until(pilot, ServiceStatus(0, "stopped", {"reason": "end of input"}),
                                lambda: app.beds["bed-5"].stopped)
            assert app.beds["bed-5"].left == (old,) and not app.beds["bed-5"].alarms
            await publish_until(pilot, _heartbeat("tcp://127.0.0.1:1", [new]), lambda: app.beds["bed-5"].alarms)
            view = app.beds["bed-5"]
            assert view.stopped is None and view.left == (old,) and view.alarms == (new,)
            assert _text(app.query_one(AlertBanner)).count("PAIN CRY") == 2
            await publish_until(pilot, ServiceStatus(0, "failed", {"reason": "embedder worker failed"}),
                                lambda: "failed" in app.beds["bed-5"].health)
            await _wait_for(pilot, lambda: app.beds["bed-5"].silent, 10)
            view = app.beds["bed-5"]
            assert view.stopped is None and {a.raised_time for a in view.left} == {old.raised_time, new.raised_time}
            assert f"bed-5: HIGH {NO_SIGNAL}" in _text(app.query_one(AlertBanner))
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        publisher.close()


def test_the_review_detail_cuts_a_long_run_description_between_words_and_gives_the_head_its_own_line(tmp_path):
    """The fault: the description was cut at 48 characters, mid-word, straight into the next field:
    "... NICU bedside: ro, head acoustic-v2"."""
    from monitor.audio import InputSpec, open_source

    source = open_source(InputSpec.parse("scenario:nicu", ""), 0.0, 50).description
    engine = open_engine(f"sqlite:///{tmp_path / 'log.db'}")
    writer = StoreWriter(engine, "run-1", "bed-3", source, "acoustic-v2", "acoustic-v2", lambda s: T0 + timedelta(seconds=s))
    writer.write([_envelope(EpisodeOpened(38_400, _episode(None))), _envelope(EpisodeClosed(96_000, _episode(6.0)))])

    async def scenario():
        app = ReviewApp(engine, EpisodeFilter(), export_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = app.screen
            await _wait_for(pilot, lambda: screen.episodes)
            detail = screen.query_one("#review-detail").render()
            lines = str(detail).splitlines()
            [described] = [line for line in lines if line.startswith("SYNTHETIC scenario")]
            assert described.endswith(" …") and source.startswith(described.removesuffix(" …"))
            assert source[len(described) - 2] == " ", "cut mid-word"
            assert lines[lines.index(described) + 1] == "head acoustic-v2"
            await pilot.press("escape")

    asyncio.run(scenario())


def _acknowledged_in_log(db: Path) -> list[tuple[str, str | None, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("select run_id, acknowledged_by, acknowledged from alarms where technical = 0").fetchall()


def test_an_alarm_acknowledged_after_its_monitor_stopped_is_in_its_log_and_the_report_counts_it(settings, models,
                                                                                                 tmp_path):
    """The fault: the acknowledgement never reached the monitor's log, and the next shift report showed the alarm
    "never acknowledged". A dashboard that can write the log (`crywatch run`'s own, or `--db`) stores it at once."""
    from monitor.report.figures import Period, build_report

    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    service = _scenario_service(settings, models, tmp_path, "bed-9", speed=0.0)
    runner = threading.Thread(target=service.run)

    async def scenario():
        app = CryWatchApp([service.bus_endpoint], review_db=f"sqlite:///{tmp_path / 'log.db'}")
        async with app.run_test(size=(120, 40)) as pilot:
            runner.start()
            await _wait_for(pilot, lambda: "bed-9" in app.beds and app.beds["bed-9"].left, 60)
            runner.join(timeout=30)
            assert [by for _, by, _ in _acknowledged_in_log(tmp_path / "log.db")] == [None]
            await pilot.press("a")
            await pilot.press("j", "d", "enter")
            await _wait_for(pilot, lambda: _acknowledged_in_log(tmp_path / "log.db")[0][1] == "JD", 10)
            assert not app.late
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        service.request_stop()
        runner.join(timeout=30)
    report = build_report(open_engine(f"sqlite:///{tmp_path / 'log.db'}"),
                          Period(since, datetime.now(timezone.utc) + timedelta(minutes=10)), {})
    response = report.beds[0].response
    assert response.never_acknowledged == 0 and response.raised_to_acknowledged.acknowledged == 1


def test_an_alarm_acknowledged_after_its_monitor_stopped_reaches_its_log_through_its_next_run(settings, models,
                                                                                               tmp_path):
    """A dashboard without the log (another PC, another user): it keeps the acknowledgement and hands it to the
    bed's monitor when that runs again, which stores it in its log; another dashboard stops holding the alarm."""
    service = _scenario_service(settings, models, tmp_path, "bed-9", speed=0.0)
    runner = threading.Thread(target=service.run)
    later: list[Service] = []
    second = threading.Thread(target=lambda: later[0].run())

    async def scenario():
        app, other = CryWatchApp([service.bus_endpoint]), CryWatchApp([service.bus_endpoint])
        async with app.run_test(size=(120, 40)) as pilot, other.run_test(size=(120, 40)) as other_pilot:
            runner.start()
            await _wait_for(pilot, lambda: "bed-9" in app.beds and app.beds["bed-9"].left, 60)
            await _wait_for(other_pilot, lambda: "bed-9" in other.beds and other.beds["bed-9"].left, 10)
            runner.join(timeout=30)
            await pilot.press("a")
            await pilot.press("j", "d", "enter")
            await _wait_for(pilot, lambda: app.late.get("bed-9"), 10)  # no log here: kept for the next run
            assert [by for _, by, _ in _acknowledged_in_log(tmp_path / "log.db")] == [None]
            later.append(Service(settings.with_overrides(  # the bed's monitor again, on the same bus and log
                audio={"input": "scenario:quiet", "speed": 1.0}, store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
                bus={"endpoint": service.bus_endpoint}, service={"bed": "bed-9"}), models=models))
            second.start()
            await _wait_for(pilot, lambda: not app.late["bed-9"], 60)
            await _wait_for(pilot, lambda: _acknowledged_in_log(tmp_path / "log.db")[0][1] == "JD", 10)
            await _wait_for(other_pilot, lambda: not other.beds["bed-9"].left, 10)
            await pilot.press("q")
            await other_pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        for monitor in (service, *later):
            monitor.request_stop()
        runner.join(timeout=30)
        if second.ident is not None:
            second.join(timeout=30)
    [(run_id, by, when)] = _acknowledged_in_log(tmp_path / "log.db")
    assert run_id == service.run_id != later[0].run_id and by == "JD" and when is not None
