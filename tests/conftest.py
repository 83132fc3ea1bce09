"""Shared fixtures: real data from ../shared (skipped with a reason when absent), settings, ports."""
from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import PROJECT_ROOT, Settings, load_settings

SHARED = PROJECT_ROOT.parent / "shared"
CRIES = SHARED / "data" / "cries"
NO_DATA = f"needs the real cry data in {CRIES} (present on CryWatch development machines and CI only)"


@pytest.fixture(scope="session")
def cries_index() -> list[dict[str, str]]:
    if not (CRIES / "index.csv").is_file():
        pytest.skip(NO_DATA)
    with open(CRIES / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def pick(rows: list[dict[str, str]], count: int, **where: str) -> list[dict[str, str]]:
    """The first `count` rows matching, one per group so that clips are independent."""
    chosen, groups = [], set()
    for row in rows:
        if all(row[k] == v for k, v in where.items()) and row["group"] not in groups:
            chosen.append(row)
            groups.add(row["group"])
            if len(chosen) == count:
                break
    return chosen


@pytest.fixture(scope="session")
def held_out(cries_index) -> list[dict[str, str]]:
    """Rows whose infant or recording the shipped cry detector never trained or tuned on."""
    from monitor.config import DetectorSettings
    from monitor.detect import DetectorModel

    detector = DetectorModel.load(DetectorSettings().model_path())
    test_groups = set(detector.metadata["training"]["split_groups"]["test"])
    return [r for r in cries_index if f"{r['source']}/{r['group']}" in test_groups]


def cry_path(row: dict[str, str]) -> Path:
    return CRIES / row["path"]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def models(settings):
    from monitor.pipeline import Models

    return Models.load(settings)


def free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def crywatch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", *args]


def run_crywatch(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`crywatch ARGS` in the project root; `env` adds to this process's environment."""
    return subprocess.run(crywatch_command(*args), capture_output=True, text=True, timeout=timeout, cwd=PROJECT_ROOT,
                          env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


@pytest.fixture(scope="session")
def virtual_mic() -> str:
    """A PulseAudio null sink whose monitor is the default PortAudio input; returns the sink name."""
    missing = [tool for tool in ("pulseaudio", "pactl", "pacat", "paplay") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"virtual microphone needs {', '.join(missing)} (apt-get install pulseaudio pulseaudio-utils)")
    result = subprocess.run(["bash", str(PROJECT_ROOT / "tests" / "virtual_mic.sh")], capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"virtual microphone set-up failed: {result.stderr or result.stdout}")
    return "virt"
