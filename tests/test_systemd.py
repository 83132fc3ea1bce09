"""The unit file: sandboxed well enough for a bedside PC (systemd's own scoring)."""
import re
import shutil
import subprocess

import pytest

from tests.conftest import PROJECT_ROOT

UNIT = PROJECT_ROOT / "systemd" / "crywatch.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (apt-get install systemd)")
def test_the_unit_scores_as_exposed_as_at_most_2_5():
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True,
                            text=True, timeout=60)
    score = re.search(r"Overall exposure level for crywatch.service: ([0-9.]+)", result.stdout)
    assert score, result.stdout + result.stderr
    print(f"\nsystemd-analyze security: {score.group(1)}")
    assert float(score.group(1)) <= 2.5


def test_the_unit_pets_the_watchdog_well_inside_its_limit_and_stops_in_time():
    text = UNIT.read_text()
    watchdog = int(re.search(r"^WatchdogSec=(\d+)", text, re.M).group(1))
    stop = int(re.search(r"^TimeoutStopSec=(\d+)", text, re.M).group(1))
    from monitor.config import check_watchdog, load_settings
    from monitor.service import _STOP_BUDGET_S

    check_watchdog(load_settings(), str(watchdog * 1_000_000))  # the shipped config passes the service's own check
    assert _STOP_BUDGET_S < stop


def _values(text: str, key: str) -> list[str]:
    """Every value of `key` in the unit, split on spaces (systemd lists)."""
    return [value for line in re.findall(rf"^{key}=(.*)$", text, re.M) for value in line.split()]


def test_the_unit_starts_after_time_sync_so_event_times_are_right_from_the_start():
    text = UNIT.read_text()
    assert "time-sync.target" in _values(text, "Wants") and "time-sync.target" in _values(text, "After")


def test_systemctl_reload_sends_the_service_sighup():
    assert re.findall(r"^ExecReload=(.*)$", UNIT.read_text(), re.M) == ["/bin/kill -HUP $MAINPID"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (apt-get install systemd)")
def test_systemd_reads_the_unit_without_complaint(tmp_path):
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", str(UNIT)], capture_output=True, text=True,
                            timeout=60)
    complaints = [line for line in result.stderr.splitlines() if "crywatch.service" in line
                  and "Command /opt/crywatch" not in line and "is not executable" not in line]
    assert complaints == [], result.stderr
