"""Soak: hours of mixed real audio through `crywatch run`, as fast as it goes and at 20x real time with
a CPU hog beside it (a benchmark, not a test; needs ../shared/data/cries).

The recording is real clips end to end: cries (corvin, donateacry, ESC-50 crying_baby) and non-cry
sounds (ESC-50, spoken digits), each after 4-20 s of faint room noise, written once as FLAC outside
the repository. Each run prints what a long night would show: windows dropped, audio skipped to
catch up, the stages' lag (from the heartbeats on the bus), resident memory at the start and the end,
technical alarms, and the run's cry episodes beside `crywatch analyze`'s over the same file.

    .venv/bin/python bench/soak.py --hours 0.5
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.machine when run as a script

from bench.machine import cpu_model, load_average  # noqa: E402
from monitor.audio import load_audio  # noqa: E402
from monitor.bus import Subscriber  # noqa: E402
from monitor.config import PROJECT_ROOT  # noqa: E402
from monitor.messages import SAMPLE_RATE, AlarmRaised, Heartbeat  # noqa: E402

CRIES = PROJECT_ROOT.parent / "shared" / "data" / "cries"
_CLIPS_EACH = 60  # distinct clips of each kind kept in memory and reused
_CRY_SHARE = 0.35  # of the clips placed
_ENDED = re.compile(r"cry episode \d+ ended: ([\d.]+)-([\d.]+) s")
_STOPPED = re.compile(r"\] (?:stopped|failed) \((.*)\)$")


def make_recording(path: Path, hours: float, seed: int) -> int:
    """Writes the mixture to `path` block by block (memory stays flat for 8 h); returns its samples."""
    with open(CRIES / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    rng = np.random.default_rng(seed)
    pools = {}
    for cry in ("1", "0"):
        chosen = [rows[i] for i in rng.permutation(len(rows)) if rows[i]["cry"] == cry][:_CLIPS_EACH]
        pools[cry] = [load_audio(CRIES / row["path"]) for row in chosen]
    total = int(hours * 3600 * SAMPLE_RATE)
    written = 0
    with soundfile.SoundFile(path, "w", samplerate=SAMPLE_RATE, channels=1, format="FLAC", subtype="PCM_16") as out:
        while written < total:
            gap = (0.002 * rng.standard_normal(int(rng.uniform(4, 20) * SAMPLE_RATE))).astype(np.float32)
            pool = pools["1" if rng.random() < _CRY_SHARE else "0"]
            clip = pool[rng.integers(len(pool))]
            part = np.concatenate([gap, clip])[: total - written]
            out.write(np.clip(part, -1, 1))
            written += len(part)
    return written


def analyze_episodes(recording: Path) -> list[tuple[float, float]]:
    done = subprocess.run([sys.executable, "-m", "monitor.cli", "analyze", "--json", str(recording)],
                          capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    [result] = json.loads(done.stdout)
    return [(ep["start_s"], ep["end_s"]) for ep in result["episodes"]]


@dataclass
class RunFigures:
    speed: float
    hogs: int
    wall_s: float = 0.0
    episodes: list[tuple[float, float]] = field(default_factory=list)
    stop: dict[str, str] = field(default_factory=dict)
    max_lag_s: float = 0.0
    max_stage_lag_s: dict[str, float] = field(default_factory=dict)
    behind_alarms: int = 0
    behind_at_end: bool = False  # monitor_behind's cause still present in the last heartbeat
    technical_alarms: list[str] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (audio heard s, MB), once a second
    heard_s: float = 0.0


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
            return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def soak_run(recording: Path, speed: float, hogs: int, folder: Path) -> RunFigures:
    """One `crywatch run` over the recording, with `hogs` busy processes beside it."""
    figures = RunFigures(speed, hogs)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(hogs)]
    subscriber = Subscriber([endpoint])
    started = time.monotonic()
    service = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "--input", str(recording), "--speed", str(speed), "--headless",
         "--db", f"sqlite:///{folder / f'soak-{speed:g}.db'}", "--bus", endpoint, "--bed", "soak"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(service.stdout or ()), daemon=True)
    reader.start()
    next_rss = 0.0
    try:
        while service.poll() is None:
            message = subscriber.receive(200)
            if time.monotonic() >= next_rss:
                next_rss = time.monotonic() + 1.0
                rss = _rss_mb(service.pid)
                if rss is not None and figures.heard_s > 0:  # from the first heartbeat: models loaded
                    figures.rss_mb.append((figures.heard_s, rss))
            if message is None:
                continue
            event = message.event
            if isinstance(event, Heartbeat):
                figures.max_lag_s = max(figures.max_lag_s, event.lag_s)
                figures.heard_s = event.heard_s
                figures.behind_at_end = any(a.label == "monitor_behind" and a.condition for a in event.alarms)
                for stage, lag in event.stage_lag_s.items():
                    figures.max_stage_lag_s[stage] = max(figures.max_stage_lag_s.get(stage, 0.0), lag)
            elif isinstance(event, AlarmRaised) and event.alarm.technical:
                figures.technical_alarms.append(event.alarm.label)
                figures.behind_alarms += event.alarm.label == "monitor_behind"
    finally:
        for hog in busy:
            hog.send_signal(signal.SIGKILL)
            hog.wait()
        if service.poll() is None:
            service.terminate()
        service.wait(30)
        reader.join(10)
        subscriber.close()
    figures.wall_s = time.monotonic() - started
    for line in lines:
        if (ended := _ENDED.search(line)) is not None:
            figures.episodes.append((float(ended[1]), float(ended[2])))
        elif (stopped := _STOPPED.search(line.rstrip())) is not None:
            figures.stop = dict(part.split("=", 1) for part in re.split(r", (?=\w+=)", stopped[1]))
    return figures


def free_port() -> int:
    """A free loopback port (closed again before the monitor binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def matched(reference: list[tuple[float, float]], found: list[tuple[float, float]], slack_s: float = 1.0) -> int:
    """Reference episodes that some found episode overlaps (within `slack_s`)."""
    return sum(any(s - slack_s < end and start < e + slack_s for s, e in found) for start, end in reference)


def report(figures: RunFigures, reference: list[tuple[float, float]], duration_s: float) -> str:
    # Growth from a tenth of the way in (caches and the episode history filled) to the end.
    settled = [mb for heard, mb in figures.rss_mb if heard >= duration_s / 10] or [mb for _heard, mb in figures.rss_mb]
    rss = [mb for _heard, mb in figures.rss_mb]
    paced = " (paced: the playback waits for the stages, so lag is how far it may run ahead)" if not figures.speed else ""
    lags = ", ".join(f"{stage} {lag:.1f}" for stage, lag in figures.max_stage_lag_s.items())
    hog = f" + {figures.hogs} CPU hog{'s' if figures.hogs != 1 else ''}" if figures.hogs else ""
    return "\n".join([
        f"--speed {figures.speed:g}{hog}: {figures.wall_s:.0f} s wall for {duration_s / 3600:.2f} h of audio "
        f"(heard {figures.heard_s:.0f} s)",
        f"  episodes: run {len(figures.episodes)}, analyze {len(reference)}, analyze's found by the run "
        f"{matched(reference, figures.episodes)}/{len(reference)}, run's not in analyze "
        f"{len(figures.episodes) - matched(figures.episodes, reference)}",
        f"  dropped windows {figures.stop.get('dropped_windows', '?')}, skipped {figures.stop.get('skipped_s', '?')} s "
        f"of audio, overruns {figures.stop.get('overruns', '?')}, stop reason {figures.stop.get('reason', '?')}",
        f"  max lag in heartbeats {figures.max_lag_s:.1f} s (per stage: {lags}){paced}; monitor_behind raised "
        f"{figures.behind_alarms}x{', still behind at the end' if figures.behind_at_end else ''}; "
        f"technical alarms: {', '.join(sorted(set(figures.technical_alarms))) or 'none'}",
        f"  RSS {rss[0] if rss else float('nan'):.0f} MB at the first heartbeat, "
        f"{settled[0] if settled else float('nan'):.0f} MB a tenth of the way in, "
        f"{rss[-1] if rss else float('nan'):.0f} MB at the end, max {max(rss) if rss else float('nan'):.0f} MB",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=0.25, help="audio to play (default 0.25 h)")
    parser.add_argument("--speeds", default="0,20", help="playback speeds, comma-separated (0 = as fast as possible)")
    parser.add_argument("--hogs", type=int, default=1, help="busy processes beside every run at a speed above 0")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--keep", help="folder for the recording and the logs (default: a temporary one, removed)")
    args = parser.parse_args()
    if not (CRIES / "index.csv").is_file():
        sys.exit(f"soak needs the real cry data in {CRIES}")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the service's own setting in the unit
    with tempfile.TemporaryDirectory(prefix="crywatch-soak-") as scratch:
        folder = Path(args.keep or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        recording = folder / "soak.flac"
        samples = make_recording(recording, args.hours, args.seed)
        print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, load {load_average()}")
        print(f"recording: {samples / SAMPLE_RATE / 3600:.2f} h of mixed real clips ({recording})", flush=True)
        started = time.monotonic()
        reference = analyze_episodes(recording)
        print(f"crywatch analyze: {len(reference)} episodes in {time.monotonic() - started:.0f} s", flush=True)
        for speed in (float(s) for s in args.speeds.split(",")):
            figures = soak_run(recording, speed, args.hogs if speed > 0 else 0, folder)
            print(report(figures, reference, samples / SAMPLE_RATE), flush=True)


if __name__ == "__main__":
    main()
