"""YAMNet speed on one core (a benchmark, not a test).

Prints ms per patch (96 x 64 log-mel, 0.96 s) at batch 1 and 8 for the numpy port (int8 arithmetic,
the default, and float activations) and for tf.lite's interpreter on one thread (XNNPACK), plus the
front end's cost per patch at 0.48 s and 0.24 s hops, as a markdown table. BLAS is held to one thread.
Real cry audio when ../shared is present, else noise (the cost does not depend on content).

    python bench/bench_yamnet.py [--repeats 20] [--model models/yamnet]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for bench.machine when run as a script

from bench.machine import cpu_model, load_average  # noqa: E402
from monitor.detect.yamnet import DEFAULT_FOLDER, YamnetError, YamnetModel, patches  # noqa: E402

SHARED = ROOT.parent / "shared"
TFLITE = SHARED / "models" / "yamnet" / "yamnet_spectra_in.tflite"


def audio() -> tuple[np.ndarray, str]:
    index = SHARED / "data" / "cries" / "index.csv"
    if index.is_file():
        from monitor.audio import load_audio

        rows = [line.split(",")[0] for line in index.read_text().splitlines()[1:] if ",corvin," in line][:4]
        return np.concatenate([load_audio(SHARED / "data" / "cries" / r) for r in rows]), "real infant cries"
    return (np.random.default_rng(0).standard_normal(16_000 * 20) * 0.1).astype(np.float32), "noise (../shared absent)"


def ms_per_item(run: Callable[[], object], items: int, repeats: int) -> float:
    run()  # warm-up: allocations, XNNPACK packing
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per cell (median reported)")
    parser.add_argument("--model", type=Path, default=DEFAULT_FOLDER)
    args = parser.parse_args()

    samples, content = audio()
    cut = patches(samples, 48)[:8]
    print(f"machine: {cpu_model()}, 1 of its cores (BLAS and TFLite on one thread), numpy {np.__version__}; "
          f"load average {load_average()} at start")
    print(f"input: {len(cut)} patches of {content}; median of {args.repeats} timed calls after one warm-up\n")
    print("| what | ms/patch, batch 1 | ms/patch, batch 8 |")
    print("|---|---|---|")
    with threadpool_limits(limits=1):
        for quantised, label in ((True, "numpy port, int8 arithmetic (default)"), (False, "numpy port, float activations")):
            model = YamnetModel.load(args.model, quantised=quantised)
            one = ms_per_item(lambda: model.run(cut[:1]), 1, args.repeats)
            eight = ms_per_item(lambda: model.run(cut, batch=8), 8, args.repeats)
            print(f"| {label} | {one:.2f} | {eight:.2f} |")
        print(f"| {tflite_row(cut, args.repeats)} |")
        seconds = 10.0
        stream = np.resize(samples, int(16_000 * seconds))
        for hop in (48, 24):
            count = len(patches(stream, hop))
            cost = ms_per_item(lambda: patches(stream, hop), count, max(3, args.repeats // 4))
            print(f"| front end, {seconds:.0f} s stream at hop {hop} frames ({count} patches) | {cost:.3f} | |")


def tflite_row(cut: np.ndarray, repeats: int) -> str:
    if not TFLITE.is_file():
        return f"tf.lite interpreter | {TFLITE} absent |"
    try:
        from train.detector.yamnet_export import interpreter, interpreter_scores

        it = interpreter(TFLITE)
    except (ImportError, YamnetError) as exc:
        return f"tf.lite interpreter | unavailable ({exc}) |"
    # Its input is fixed at [1, 96, 64]: batch 8 is 8 invokes.
    one = ms_per_item(lambda: interpreter_scores(it, cut[:1]), 1, repeats)
    eight = ms_per_item(lambda: interpreter_scores(it, cut), 8, repeats)
    return f"tf.lite interpreter, 1 thread (XNNPACK, int8) | {one:.2f} | {eight:.2f}"


if __name__ == "__main__":
    main()
