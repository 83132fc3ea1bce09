"""The unit dashboard: a real Textual app (Pilot) on real sockets, and the real terminal (tmux)."""
import asyncio
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from textual_plotext import PlotextPlot

from monitor.bus import Envelope, Publisher
from monitor.control import OWN_SOCKET, ControlReply, ControlServer
from monitor.messages import AlarmRaised, EpisodeClosed, EpisodeOpened, EpisodeSummary, Heartbeat
from monitor.service import Service
from monitor.store import EpisodeFilter, StoreWriter, list_episodes, open_engine
from monitor.tui.app import CryWatchApp
from monitor.tui.review import ReviewApp, ReviewScreen
from monitor.tui.widgets import AlertBanner, BedTile, EpisodesTable
from tests.conftest import PROJECT_ROOT, crywatch_command, free_endpoint, run_crywatch
from tests.test_bus import ALARM, EPISODE
from tests.test_store import T0, _envelope, _episode, _window


async def _wait_for(pilot, condition, seconds: float = 20.0) -> None:
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


def test_dashboard_shows_a_live_episode_from_a_running_service(settings, models, tmp_path):
    configured = settings.with_overrides(audio={"input": "scenario:nicu", "speed": 4.0},
                                         store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
                                         bus={"endpoint": free_endpoint()}, service={"bed": "bed-12"})
    service = Service(configured, models=models)
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
            assert tile.border_title == "bed-12" and "episode 1 " in _text(tile)
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


def test_a_bad_endpoint_is_one_line_not_a_traceback():
    result = run_crywatch("tui", "--connect", "foo", timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "cannot connect to foo" in result.stderr


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)")
def test_crywatch_run_draws_the_dashboard_in_a_real_terminal(tmp_path):
    session = f"crywatch-test-{time.monotonic_ns()}"
    command = " ".join(crywatch_command("run", "--input", "scenario:nicu", "--speed", "4",
                                        "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus", free_endpoint()))
    done = tmp_path / "exit"
    # 80x24: the smallest terminal a bedside PC is likely to have; the size is pinned, not left to tmux.
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", "-c", str(PROJECT_ROOT),
                    f"{command}; echo $? > {done}; sleep 60"], check=True)
    subprocess.run(["tmux", "set-option", "-t", session, "window-size", "manual"], check=True)
    subprocess.run(["tmux", "resize-window", "-t", session, "-x", "80", "-y", "24"], check=True)

    def screen() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout

    try:
        deadline = time.monotonic() + 40
        while "ongoing" not in screen():
            assert time.monotonic() < deadline, screen()
            time.sleep(0.5)
        shown = screen()
        assert "CryWatch" in shown and "level" in shown and "dBFS" in shown and "episode 1 " in shown
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 30
        while not done.exists() or "crywatch: stopped after" not in screen():  # tmux draws the pane a little later
            assert time.monotonic() < deadline, screen()
            time.sleep(0.2)
        assert done.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


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
            assert "episode 1: smoothed class probabilities" in drawn
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
