"""Shared fixtures: real data from ../shared (skipped with a reason when absent), settings, ports."""
from __future__ import annotations

import csv
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

# One BLAS/OpenMP thread for the tests and every crywatch they start, set before numpy or torch is
# imported. `make test` runs two pytest-xdist workers on a 2-core machine, so more threads only
# oversubscribe it; and OpenBLAS's threads spin on the detector's small per-frame matrices: on a
# busy 2-core machine `crywatch analyze` of 12 min of audio took 60-99 s with the default threads
# and 7-9 s with one. Set these variables yourself to try other counts.
for _threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

from monitor.config import PROJECT_ROOT, Settings, load_settings  # noqa: E402

SHARED = PROJECT_ROOT.parent / "shared"
CRIES = SHARED / "data" / "cries"
NO_DATA = f"needs the real cry data in {CRIES} (present on CryWatch development machines and CI only)"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs two pytest-xdist workers (--dist loadgroup): tests of one xdist_group run on
    one worker, one after another. Grouped here: the tests on the PulseAudio virtual microphone (one
    sink, which a test unloads), and each module with module-scoped fixtures, which would otherwise be
    built once per worker (a Ray Serve server, the 303 M-parameter HeAR stand-in, benchmark mixtures)."""
    for item in items:
        fixtures = getattr(item, "_fixtureinfo", None)
        if "virtual_mic" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("virtual-microphone"))
        elif fixtures is not None and any(definitions[-1].scope == "module"
                                          for definitions in fixtures.name2fixturedefs.values()):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


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


def two_cries(cries_index: list[dict[str, str]]):
    """Two real pain cries of one infant (corvin ASE_D03, ASE_D04) with 8 s of faint noise between them, 25 s
    in all: a short recording of two episodes, the first of which raises a pain alarm (`crywatch analyze`)."""
    import numpy as np

    from monitor.audio import load_audio
    from monitor.messages import SAMPLE_RATE

    rows = {row["path"]: row for row in cries_index}
    first, second = (load_audio(cry_path(rows[f"corvin/{name}.flac"])) for name in ("ASE_D03", "ASE_D04"))
    rng = np.random.default_rng(3)
    quiet = [(0.002 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32) for s in (1.0, 8.0, 1.0)]
    return np.concatenate([quiet[0], first, quiet[1], second, quiet[2]])


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


class Lines:
    """A process's output, read in a thread, waited on line by line."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                found = next((line for line in self.lines if re.search(pattern, line)), None)
                if found is not None:
                    return found
                assert time.monotonic() < deadline, f"no line matching {pattern!r} in:\n{''.join(self.lines)}"
                self._new.wait(0.2)


def wait_for_event(subscriber, kind: type, events: list, deadline: float, what: str):
    """Bus messages received into `events` until one holds an event of `kind` (by time.monotonic() `deadline`, else
    the test fails saying `what`); that event."""
    while not any(isinstance(e.event, kind) for e in events):
        assert time.monotonic() < deadline, what
        if (got := subscriber.receive(100)) is not None:
            events.append(got)
    return next(e.event for e in events if isinstance(e.event, kind))


@pytest.fixture
def utc_timezone(monkeypatch) -> Iterator[None]:
    """Local time is UTC for the test (clock times on screen are local), and the process's zone is put back after."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


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


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the session (Debian's postgresql package), on a free loopback port."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("needs PostgreSQL (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="needs psycopg (pip install -e '.[dev]')")
    as_owner: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="crywatch-postgres-"))  # pytest's own tmp is private to root
    if os.geteuid() == 0:  # initdb refuses to run as root: use the package's postgres user
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = root / "data"
    subprocess.run([*as_owner, str(bin_dir / "initdb"), "-D", str(data), "-U", "crywatch", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"], check=True, capture_output=True,
                   timeout=120)
    try:
        subprocess.run([*as_owner, str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "crywatch",
                        "crywatch"], check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://crywatch@127.0.0.1:{port}/crywatch"
    finally:
        subprocess.run([*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(root, ignore_errors=True)
