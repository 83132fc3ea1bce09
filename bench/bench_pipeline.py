"""Speed and memory of the offline pipeline on this machine (a benchmark, not a test).

Prints ms per 2 s window for each stage, the batch driver's speed as a multiple of real time,
and peak memory. Runs on the built-in scenario, so it needs no data.
"""
from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np

from monitor.config import load_settings
from monitor.gate import gate_recording
from monitor.analyze import analyze_samples
from monitor.pipeline import Models
from monitor.scenario import render_scenario


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def _best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    settings = load_settings()
    models = Models.load(settings)
    samples = render_scenario("nicu").samples
    windows = gate_recording(samples, settings.gate)
    gated = np.stack([w.samples for w in windows if w.gated])
    vectors = models.embedder.embed(gated)
    n, seconds = len(windows), len(samples) / 16000

    gate_s = _best_of(3, lambda: gate_recording(samples, settings.gate))
    embed_1 = _best_of(3, lambda: [models.embedder.embed(g[None]) for g in gated]) / len(gated)
    embed_8 = _best_of(3, lambda: models.embedder.embed(gated[:8])) / 8
    head_s = _best_of(3, lambda: models.head.predict_proba(vectors)) / len(vectors)
    total = _best_of(3, lambda: analyze_samples(samples, settings, models))

    print(f"machine: {_cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"embedder {models.embedder.id} (dim {models.embedder.dim}), head {models.head.name}")
    print(f"scenario: {seconds:.0f} s audio, {n} windows, {len(gated)} gated")
    print("| stage | ms per window |\n|---|---:|")
    print(f"| gate (webrtcvad + pitch), per hop | {1000 * gate_s / n:.2f} |")
    print(f"| embed, batch 1 | {1000 * embed_1:.2f} |")
    print(f"| embed, batch 8 | {1000 * embed_8:.2f} |")
    print(f"| head | {1000 * head_s:.3f} |")
    print(f"analyze (whole pipeline): {seconds / total:.0f}x real time")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
