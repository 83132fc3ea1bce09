"""How long `crywatch report` takes on a busy unit's night (a benchmark, not a test).

Writes a 12 h log of 8 beds through the store's own writer (StoreWriter, the code the service logs
with): a crying spell every 4 to 12 minutes per bed (10 s to 3 min, with its crying time, bouts and
pitch; one window a second, each window with its acoustic-v2-sized embedding), alarms on pain spells
(most acknowledged within 5 s to 3 min, some never), a technical alarm now and then, one bed off for an
hour, a third of the spells reviewed. Then times `crywatch report` on it, HTML and JSON, as a user runs it.

    python bench/bench_report.py [--db runs/bench-report.db] [--beds 8] [--hours 12] [--seed 0] [--repeat 3]

An existing --db is reused (delete it to write a new one).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_model, load_average  # noqa: E402
from monitor.bus import Envelope  # noqa: E402
from monitor.messages import (  # noqa: E402
    SAMPLE_RATE,
    Alarm,
    AlarmAcknowledged,
    AlarmCleared,
    AlarmRaised,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeSummary,
    Priority,
    ServiceStatus,
    SpellAlarm,
    WindowEmbedded,
    WindowScored,
)
from monitor.store import StoreWriter, annotate, list_episodes, open_engine  # noqa: E402

CLASSES = ("not_cry", "pain", "discomfort", "hunger", "other_cry")
TYPES = CLASSES[1:]
DIM = 183  # acoustic-v2
START = datetime(2026, 11, 27, 20, 0, tzinfo=timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class _Bed:
    """One bed's runs, written through StoreWriter as the service would."""

    def __init__(self, engine, name: str, rng: np.random.Generator, centres: np.ndarray):
        self.engine, self.name, self.rng, self.centres = engine, name, rng, centres

    def run(self, t0: float, t1: float) -> None:
        self.t0 = t0
        writer = StoreWriter(self.engine, str(uuid.uuid4()), self.name, "mic", "acoustic-v2", "acoustic-v2", self.clock)
        envelope = self.envelope
        writer.write([envelope(0, ServiceStatus(0, "started", {"source": "mic"}))])
        now, number, alarm_id = 0.0, 0, 0
        while True:
            now += float(self.rng.uniform(240, 720))
            length = float(self.rng.choice([self.rng.uniform(10, 40), self.rng.uniform(40, 180)], p=[0.7, 0.3]))
            if now + length + 10 >= t1 - t0:
                break
            number += 1
            label = str(self.rng.choice(TYPES, p=[0.25, 0.35, 0.3, 0.1]))
            batch = self._episode(number, label, now, length)
            if label == "pain":
                alarm_id += 1
                batch += self._alarm(alarm_id, number, "pain", False, now + 3, now + length)
            if self.rng.random() < 0.02:
                alarm_id += 1
                batch += self._alarm(alarm_id, None, "microphone_muted", True, now + length + 5, now + length + 130)
            writer.write(batch)
            now += length
        writer.write([envelope(t1 - t0, ServiceStatus(int((t1 - t0) * SAMPLE_RATE), "stopped", {"reason": "stopped"}))])

    def clock(self, s: float) -> datetime:
        return START + timedelta(seconds=self.t0 + s)

    def envelope(self, s: float, event) -> Envelope:
        return Envelope(self.name, _iso(self.clock(s)), event)

    def _episode(self, number: int, label: str, start: float, length: float) -> list[Envelope]:
        envelope = self.envelope
        def summary(end: float | None, windows: int) -> EpisodeSummary:
            probs = {c: (0.6 if c == label else 0.1) for c in CLASSES}
            # A crying spell's running totals, from its length alone (the log's random draws stay as they were):
            # crying 80 % of it in a bout every 30 s, a third of the crying voiced, pain's more often high-pitched.
            so_far = (end or start) - start
            crying = round(0.8 * so_far, 2)
            return EpisodeSummary(number, start, end, end or start, start + 0.5, label, probs, probs, windows,
                                  crying_s=crying, bouts=1 + int(so_far // 30), voiced_s=round(crying / 3, 2),
                                  high_pitch_s=round(crying / 3 * (0.3 if label == "pain" else 0.05), 2),
                                  f0_median_hz=(620.0 if label == "pain" else 480.0) if crying else None,
                                  alarms=(SpellAlarm("pain", start + 3, "high"),) if label == "pain" else ())

        batch = [envelope(start, EpisodeOpened(int(start * SAMPLE_RATE), summary(None, 0)))]
        count = int(length)
        smoothed = np.full(len(CLASSES), 1 / len(CLASSES))
        target = np.array([0.05 if c != label else 0.8 for c in CLASSES])
        for i in range(count):
            at = start + i
            smoothed = 0.6 * smoothed + 0.4 * np.clip(target + self.rng.normal(0, 0.08, len(CLASSES)), 0.01, None)
            smoothed = smoothed / smoothed.sum()
            probs = {c: round(float(p), 4) for c, p in zip(CLASSES, smoothed)}
            batch.append(envelope(at, WindowScored(int(at * SAMPLE_RATE), at, -30.0, float(self.rng.uniform(0.3, 1)), True,
                                                   probs, probs, 1 - probs["not_cry"], ())))
            vector = self.centres[TYPES.index(label)] + self.rng.normal(0, 1.0, DIM)
            batch.append(envelope(at, WindowEmbedded(int(at * SAMPLE_RATE), at, "acoustic-v2", vector.astype(np.float32))))
        batch.append(envelope(start + length, EpisodeClosed(int((start + length) * SAMPLE_RATE), summary(start + length, count))))
        return batch

    def _alarm(self, alarm_id: int, episode: int | None, label: str, technical: bool, raised: float,
               cause_ends: float) -> list[Envelope]:
        envelope = self.envelope

        def moment(s: float) -> str:
            return _iso(self.clock(s))

        alarm = Alarm(alarm_id, label, technical, Priority.HIGH if label == "pain" else Priority.MEDIUM, label, moment(raised),
                      True, True, episode, 0.7 if not technical else None)
        events = [envelope(raised, AlarmRaised(int(raised * SAMPLE_RATE), alarm))]
        if self.rng.random() < 0.85:
            answered = raised + float(self.rng.gamma(2.0, 20.0))
            alarm = replace(alarm, acknowledged_by="AB", acknowledged_time=moment(answered))
            events.append(envelope(answered, AlarmAcknowledged(int(answered * SAMPLE_RATE), alarm)))
            cleared = max(answered, cause_ends)
        else:
            cleared = cause_ends + 600  # never acknowledged: the monitor's stop or a shift change cleared it
        alarm = replace(alarm, cleared_time=moment(cleared), announcements=1 + int((cleared - raised) // 30))
        events.append(envelope(cleared, AlarmCleared(int(cleared * SAMPLE_RATE), alarm, "acknowledged by AB")))
        return events


def write_log(path: Path, beds: int, hours: float, seed: int) -> None:
    engine = open_engine(f"sqlite:///{path}")
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (len(TYPES), DIM))
    end = hours * 3600
    for index in range(beds):
        bed = _Bed(engine, f"bed-{index + 1}", rng, centres)
        if index == beds - 1:  # one bed is off for an hour in the middle of the night
            bed.run(0, end / 2)
            bed.run(end / 2 + 3600, end)
        else:
            bed.run(0, end)
    episodes = list_episodes(engine)
    for episode in episodes[::3]:
        verdict = episode["label"] if rng.random() < 0.8 else "not_cry"
        annotate(engine, episode["id"], verdict, "CD", when=START + timedelta(hours=hours))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=ROOT / "runs" / "bench-report.db")
    parser.add_argument("--beds", type=int, default=8)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each format (a shared machine's load varies)")
    args = parser.parse_args()
    if not args.db.exists():
        args.db.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_log(args.db, args.beds, args.hours, args.seed)
        print(f"wrote {args.db} ({args.db.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f} s")
    window = ["--db", f"sqlite:///{args.db}", "--since", START.isoformat(),
              "--until", (START + timedelta(hours=args.hours)).isoformat()]
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load average before {load_average()}")
    # Wall time is what a user waits; CPU time (user + system of the child) is what it costs, and what it
    # would wait on an idle core: on a shared machine other work stretches the wall time, not the CPU time.
    print(f"| output | wall s, best of {args.repeat} | wall s, median | CPU s, median | size |\n|---|---|---|---|---|")
    for form, out in (("html", args.db.with_suffix(".html")), ("json", args.db.with_suffix(".json"))):
        walls, cpus = [], []
        for _ in range(args.repeat):  # as a user runs it: a fresh process, imports and all
            before, started = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            subprocess.run([sys.executable, "-m", "monitor.cli", "report", *window, "--format", form, "--out", str(out)],
                           check=True, cwd=ROOT, capture_output=True)
            walls.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        print(f"| {form} | {min(walls):.1f} | {statistics.median(walls):.1f} | {statistics.median(cpus):.1f} | "
              f"{out.stat().st_size / 1e6:.1f} MB |")
    print(f"load average after {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
