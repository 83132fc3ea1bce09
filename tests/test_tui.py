"""The dashboard: a real Textual app (Pilot) on real sockets, and the real terminal (tmux)."""
import asyncio
import re
import shutil
import subprocess
import threading
import time
from datetime import datetime, timezone

import pytest

from monitor.bus import Publisher, to_message
from monitor.messages import Event
from monitor.service import Service
from monitor.tui import app as app_module
from monitor.tui.app import CryWatchApp
from monitor.tui.widgets import AlertBanner, ClassBars, EpisodesTable, Meters
from tests.conftest import PROJECT_ROOT, crywatch_command, free_endpoint


async def _wait_for(pilot, condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "dashboard never reached the expected state"
        await pilot.pause(0.1)


def _text(widget) -> str:
    return str(widget.render())


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
            assert app.query_one(Meters).border_title == "bed-12"
            assert "episode 1 since" in _text(app.query_one(Meters))
            assert "not_cry" in _text(app.query_one(ClassBars))
            assert "neurological" in _text(app.query_one(ClassBars))  # shown as not detectable, not hidden
            await _wait_for(pilot, lambda: "ended" in str(table.get_row_at(0)) or table.get_row_at(0)[2] != "ongoing")
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        service.request_stop()
        runner.join(timeout=30)


def test_alerts_from_any_bed_fill_the_banner_and_a_silent_monitor_is_flagged(monkeypatch):
    monkeypatch.setattr(app_module, "SILENT_AFTER_S", 1.0)
    endpoint = free_endpoint()
    publisher = Publisher(endpoint)
    wall = datetime.now(timezone.utc)
    alert = to_message(Event("alert_raised", 32000, {"label": "pain", "probability": 0.91, "episode": 1}), "bed-4", wall)

    async def scenario():
        app = CryWatchApp([endpoint])
        async with app.run_test() as pilot:
            banner = app.query_one(AlertBanner)
            deadline = time.monotonic() + 10
            while "bed-4" not in app.beds:
                assert time.monotonic() < deadline
                publisher.publish(alert)  # until the subscription has landed
                await pilot.pause(0.05)
            assert banner.has_class("alerting") and "ALERT bed-4: PAIN CRY" in _text(banner)
            await _wait_for(pilot, lambda: "NO SIGNAL FROM MONITOR" in _text(banner), 5)
            assert "ALERT bed-4: PAIN CRY" in _text(banner)  # the alert stays visible too
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        publisher.close()


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
        assert "CryWatch" in shown and "SYNTHETIC scenario" in shown and "level" in shown and "dBFS" in shown
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 30
        while not done.exists():
            assert time.monotonic() < deadline, screen()
            time.sleep(0.2)
        assert done.read_text().strip() == "0"
        assert "crywatch: stopped after" in screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
