"""Speed and memory of the pipeline on this machine (a benchmark, not a test).

Prints the cry detector's cost per live hop (on sound and on silence, as a share of one core), what
a crying spell adds while crying (pitch tracking in the gate, the spell's bookkeeping), ms per 2 s
window for the embedder and head, the batch driver's speed as a multiple of real time, and peak
memory. Runs on the built-in scenario, so it needs no data.
"""
from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.machine when run as a script

from bench.machine import cpu_model  # noqa: E402
from monitor.analyze import analyze_samples  # noqa: E402
from monitor.audio import RingBuffer  # noqa: E402
from monitor.audio.scenario import render_scenario  # noqa: E402
from monitor.config import load_settings  # noqa: E402
from monitor.detect import Gate, gate_recording  # noqa: E402
from monitor.detect.pitch import PitchTracker  # noqa: E402
from monitor.messages import SAMPLE_RATE, Activity  # noqa: E402
from monitor.pipeline import Models, Pipeline  # noqa: E402
from monitor.spells import SpellTracker  # noqa: E402


def _best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


class _TimedPitch(PitchTracker):
    """The gate's pitch tracker, counting the CPU time it takes."""

    seconds = 0.0

    def track(self, samples: np.ndarray, centres: np.ndarray) -> np.ndarray:
        start = time.process_time()
        try:
            return super().track(samples, centres)
        finally:
            self.seconds += time.process_time() - start


def _live_gate_seconds(samples: np.ndarray, settings, models: Models, hop: int, pitch: PitchTracker | None = None) -> float:
    """CPU seconds the gate spends on `samples` fed one live hop at a time, as the service feeds it."""
    gate, ring = Gate(settings.gate, models.detector, pitch), RingBuffer(30 * SAMPLE_RATE)
    start = time.process_time()
    for i in range(0, len(samples), hop):
        ring.write(samples[i : i + hop])
        gate.advance(ring)
    return time.process_time() - start


def _spell_seconds(samples: np.ndarray, settings, models: Models, hop: int) -> float:
    """CPU seconds a spell tracker spends on the frames and windows of `samples` (fed live), replayed alone."""
    pipeline, ring, steps = Pipeline(settings, models), RingBuffer(30 * SAMPLE_RATE), []
    for i in range(0, len(samples), hop):
        ring.write(samples[i : i + hop])
        output = pipeline.gate.advance(ring, final=i + hop >= len(samples))
        if output.activity is not None:
            steps.append(output.activity)
        for embedding in pipeline.embed(output.windows):  # the predictions the tracker would be handed
            raw, evidence = pipeline.score([embedding])[0]
            steps.append(pipeline.classifier.step(embedding, raw, evidence))
    tracker = SpellTracker(settings.episodes, settings.alerts, models.head.classes, pipeline.classifier.rules)
    start = time.process_time()
    for step in steps:
        tracker.observe(step) if isinstance(step, Activity) else tracker.classify(step)
    tracker.finish()
    return time.process_time() - start


def main() -> None:
    settings = load_settings()
    models = Models.load(settings)
    scenario = render_scenario("nicu")
    samples = scenario.samples
    [(cry_start, cry_end)] = scenario.cry_spans_s
    crying = samples[int(cry_start * SAMPLE_RATE): int(cry_end * SAMPLE_RATE)]
    windows = gate_recording(samples, settings.gate, models.detector)
    gated = np.stack([w.samples for w in windows if w.gated])
    vectors = models.embedder.embed(gated)
    n, seconds = len(windows), len(samples) / 16000
    hop = int(settings.gate.detector_hop_s * SAMPLE_RATE)
    silence = np.random.default_rng(0).normal(0, 10 ** (-70 / 20), 60 * SAMPLE_RATE).astype(np.float32)

    live_s = min(_live_gate_seconds(samples, settings, models, hop) for _ in range(3))
    quiet_s = min(_live_gate_seconds(silence, settings, models, hop) for _ in range(3))
    quarter = _live_gate_seconds(samples, settings, models, SAMPLE_RATE // 4)
    crying_s = min(_live_gate_seconds(crying, settings, models, hop) for _ in range(3))
    pitches = [_TimedPitch() for _ in range(3)]
    for pitch in pitches:
        _live_gate_seconds(crying, settings, models, hop, pitch)
    pitch_s = min(p.seconds for p in pitches)
    spell_s = min(_spell_seconds(crying, settings, models, hop) for _ in range(3))
    embed_1 = _best_of(3, lambda: [models.embedder.embed(g[None]) for g in gated]) / len(gated)
    embed_8 = _best_of(3, lambda: models.embedder.embed(gated[:8])) / 8
    head_s = _best_of(3, lambda: models.head.predict_proba(vectors)) / len(vectors)
    total = _best_of(3, lambda: analyze_samples(samples, settings, models))

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"detector {models.detector.id}, embedder {models.embedder.id} (dim {models.embedder.dim}), "
          f"head {models.head.name}")
    print(f"scenario: {seconds:.0f} s audio, {n} windows, {len(gated)} gated")
    hops = seconds / settings.gate.detector_hop_s
    print(f"| gate (detector + runs + windows), live, per {settings.gate.detector_hop_s:.2f} s hop | "
          f"{1000 * live_s / hops:.2f} ms | {100 * live_s / seconds:.2f} % of a core |")
    print(f"| the same while crying (the scenario's {len(crying) / SAMPLE_RATE:.0f} s cry) | "
          f"{1000 * crying_s / (len(crying) / SAMPLE_RATE / settings.gate.detector_hop_s):.2f} ms | "
          f"{100 * crying_s / (len(crying) / SAMPLE_RATE):.2f} % of a core |")
    cry_seconds = len(crying) / SAMPLE_RATE
    print(f"| of which pitch tracking of the crying frames | {1000 * pitch_s / (cry_seconds / settings.gate.detector_hop_s):.2f}"
          f" ms | {100 * pitch_s / cry_seconds:.2f} % of a core |")
    print(f"| spell bookkeeping while crying (frames and windows) | | {100 * spell_s / cry_seconds:.3f} % of a core |")
    print(f"| the same, per 0.25 s hop | {1000 * quarter / (seconds * 4):.2f} ms | {100 * quarter / seconds:.2f} % |")
    print(f"| gate on silence (-70 dBFS noise) | {1000 * quiet_s / (60 / settings.gate.detector_hop_s):.2f} ms |"
          f" {100 * quiet_s / 60:.2f} % of a core |")
    print("| stage | ms per window |\n|---|---:|")
    print(f"| embed, batch 1 | {1000 * embed_1:.2f} |")
    print(f"| embed, batch 8 | {1000 * embed_8:.2f} |")
    print(f"| head | {1000 * head_s:.3f} |")
    print(f"analyze (whole pipeline): {seconds / total:.0f}x real time")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
