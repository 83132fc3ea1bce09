"""SIGHUP (systemctl reload) re-reads the config: thresholds, the crying alarm's time, alarm settings and paging
change without a gap in monitoring; keys that need a restart are named; a bad file changes nothing. A real
`crywatch run`."""
import json
import os
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, Lines, crywatch_command, free_endpoint


def test_sighup_applies_alarm_settings_and_paging_names_restart_keys_and_keeps_monitoring(tmp_path):
    config, paged = tmp_path / "config.toml", tmp_path / "paged.jsonl"
    pager = tmp_path / "page.sh"
    pager.write_text(f"#!/bin/sh\ncat >> {paged}\necho >> {paged}\n")
    pager.chmod(0o755)
    config.write_text("[audio]\nblock_ms = 50\n")
    process = subprocess.Popen(
        crywatch_command("--config", str(config), "--log-level", "info", "run", "--headless", "--input",
                         "scenario:nicu", "--speed", "6", "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus",
                         free_endpoint()),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Lines(process.stdout)
    try:
        output.wait_for(r"\] listening")  # at 6x, the cry (14 s in) is still seconds away
        config.write_text("[alerts]\ncrying_s = 2\n")
        process.send_signal(signal.SIGHUP)
        refused = output.wait_for(r"\] reload_refused")
        assert "alerts.crying_s: 2 is outside the allowed range [5, 3600] seconds" in refused
        config.write_text(f'[alerts]\ncrying_s = 10\npriorities = {{ crying = "low" }}\ncommand = "{pager}"\n'
                          '[audio]\nblock_ms = 100\n')
        process.send_signal(signal.SIGHUP)
        reloaded = output.wait_for(r"\] reloaded")
        assert "applied=['alerts.crying_s', 'alerts.priorities', 'alerts.command']" in reloaded
        assert "needs_restart=['audio.block_ms']" in reloaded
        assert "audio.block_ms changed but take effect only after a restart" in output.wait_for("only after a restart")
        assert process.poll() is None  # still monitoring (SIGHUP used to end it: exit 129)
        # Crying is medium by default, and raised after 30 s of crying (some 46 s in): the reloaded settings hold.
        alarm = output.wait_for(r"ALARM \d+ \[low\] CRYING")
        assert float(re.search(r"\[\S+ +([\d.]+) s\]", alarm)[1]) < 30.0, alarm
        deadline = time.monotonic() + 30
        while not paged.exists() or '"type":"alarm_raised"' not in paged.read_text():
            assert time.monotonic() < deadline, "the reloaded pager command never ran"
            time.sleep(0.1)
        assert json.loads(paged.read_text().splitlines()[0])["data"]["alarm"]["priority"] == "low"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "".join(output.lines)
    finally:
        process.kill()
    assert "stopped (" in output.wait_for(r"\] stopped \(")


def _unprivileged() -> list[str]:
    """A prefix that runs a command without the capabilities that let root read any file: a file of mode 000 is
    then unreadable to it, as it is to the service's own user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("as root, needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-dac_override,-dac_read_search", "--"]


def _monitor(config, tmp_path, *more: str, unprivileged: bool = True) -> list[str]:
    command = crywatch_command("--config", str(config), "--log-level", "info", "run", "--headless",
                               "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus", free_endpoint(), *more)
    return [*_unprivileged(), *command] if unprivileged else command


def test_an_unreadable_config_at_start_is_one_line_and_exit_2(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[alerts]\nrepeat_s = 30\n")
    config.chmod(0)
    result = subprocess.run(_monitor(config, tmp_path, "--input", "scenario:quiet"), cwd=PROJECT_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"crywatch: error: config file {config} cannot be read (Permission denied): give the user running crywatch "
        "read access to it (and to its folder)"]


def test_sighup_with_an_unreadable_config_is_refused_and_monitoring_goes_on(tmp_path):
    """The fault: PermissionError's traceback, exit 1, no stopped status, the open episode never closed."""
    config = tmp_path / "config.toml"
    config.write_text("[alerts]\nrepeat_s = 30\n")
    process = subprocess.Popen(_monitor(config, tmp_path, "--input", "scenario:nicu", "--speed", "6"),
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = Lines(process.stdout)
    try:
        output.wait_for(r"cry episode 1 started", timeout=120)  # the scenario's cry is 20 s in: an episode is open
        config.chmod(0)
        process.send_signal(signal.SIGHUP)
        refused = output.wait_for(r"\] reload_refused")
        assert f"config file {config} cannot be read (Permission denied)" in refused
        config.chmod(0o600)
        process.send_signal(signal.SIGHUP)
        assert "applied=[]" in output.wait_for(r"\] reloaded")
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "".join(output.lines)
    finally:
        process.kill()
    output.wait_for(r"\] stopped \(reason=SIGTERM")
    assert "Traceback" not in "".join(output.lines)
    with sqlite3.connect(tmp_path / "log.db") as db:
        assert db.execute("select count(*) from episodes where end is null").fetchone()[0] == 0
        assert db.execute("select count(*) from episodes").fetchone()[0] >= 1


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether process `pid` has a handler of its own for `sig` (/proc's SigCgt mask)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught >> (sig - 1) & 1)


def test_a_sighup_during_start_up_is_held_and_applied_once_the_monitor_runs(tmp_path):
    """The fault: a SIGHUP before the service installed its handler (imports and models take seconds) ended
    the monitor with exit 129. It is sent here as soon as monitor/cli.py holds it, and half a second after the
    interpreter came up at the latest, long before the monitor listens."""
    config = tmp_path / "config.toml"
    config.write_text("[alerts]\nrepeat_s = 30\n")
    process = subprocess.Popen(_monitor(config, tmp_path, "--input", "scenario:nicu", "--speed", "1", unprivileged=False),
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _catches(process.pid, signal.SIGINT):  # Python's own handler: the interpreter is up
            assert time.monotonic() < deadline and process.poll() is None, "the interpreter never came up"
            time.sleep(0.005)
        up = time.monotonic()
        while not _catches(process.pid, signal.SIGHUP) and time.monotonic() < up + 0.5:
            time.sleep(0.005)
        assert not select.select([process.stdout], [], [], 0)[0], "the monitor had started already"
        process.send_signal(signal.SIGHUP)
        output = Lines(process.stdout)
        output.wait_for(r"\] listening", timeout=120)
        assert "applied=[]" in output.wait_for(r"\] reloaded")
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "".join(output.lines)
    finally:
        process.kill()
