"""HeAR embedding speed on this machine (a benchmark, not a test).

Prints ms per 2 s clip for each backend x precision x batch as a markdown table, clips/s at
batch 128 when CUDA is present, and each reduced precision's cosine to fp32 on real cry audio.
The cost does not depend on the weights, so the torch rows use random weights of the real
architecture unless --torch-dir names real ones; the TF rows use a stand-in SavedModel unless
--tf-dir names google/hear, and then say so, because the stand-in's cost means nothing.

    python bench/bench_hear.py [--torch-dir DIR] [--tf-dir DIR] [--repeats 3] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.hear_standins (the stand-in builders) when run as a script

from bench.machine import cpu_model, load_average  # noqa: E402
from monitor.embed.hear import HearWeights, TfHear, TorchHear  # noqa: E402
from tests.hear_standins import CRIES, cry_clips, randomize, save_tf_standin  # noqa: E402

PRECISIONS = ("fp32", "bf16", "int8")


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA GPU"
    return (f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {gpu}; load average {load_average()} at start")


def random_vit(seed: int = 0) -> Any:
    """HEAR.md's ViT-L/16 with random weights: LayerNorms near identity, everything else N(0, 0.02)."""
    import torch

    from monitor.embed.hear_network import HearViT

    torch.manual_seed(seed)
    return randomize(HearViT().eval(), norm_marker="norm")


def clips_for_bench(count: int) -> tuple[np.ndarray, str]:
    if (CRIES / "index.csv").exists():
        return cry_clips(count), "real infant cries"
    rng = np.random.default_rng(0)  # speed does not depend on content; cosine then does not mean much
    return rng.standard_normal((count, 32_000)).astype(np.float32), "noise (../shared absent)"


def ms_per_clip(embedder: Any, clips: np.ndarray, batch: int, repeats: int) -> float:
    windows = np.resize(clips, (batch, clips.shape[1]))
    embedder.embed(windows)  # warm-up: allocator, oneDNN primitive cache, CUDA kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embedder.embed(windows)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / batch


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def torch_rows(args: argparse.Namespace, clips: np.ndarray) -> tuple[list[str], list[str]]:
    import torch

    if args.torch_dir:
        weights = HearWeights("torch", Path(args.torch_dir), "local")
        source = f"real weights from {args.torch_dir}"
        make = lambda precision, device: TorchHear.load(weights, precision, device)  # noqa: E731
    else:
        vit, weights, source = random_vit(), HearWeights("torch", Path("random"), "random"), "random weights"
        make = lambda precision, device: TorchHear.from_vit(vit, weights, precision, device)  # noqa: E731
    rows, similarity = [], []
    reference = make("fp32", "cpu").embed(clips)
    for precision in PRECISIONS:
        embedder = make(precision, "cpu")
        cells = [f"{ms_per_clip(embedder, clips, b, args.repeats):.0f}" for b in (1, 8)]
        rows.append(f"| torch ({source}) | cpu | {precision} | {' | '.join(cells)} | |")
        if precision != "fp32":
            sim = cosine(embedder.embed(clips), reference)
            similarity.append(f"| {precision} | cpu | {sim.min():.6f} | {sim.mean():.6f} | {len(clips)} |")
        del embedder
    if torch.cuda.is_available():
        for precision in ("fp32", "bf16"):
            embedder = make(precision, "cuda")
            cells = [f"{ms_per_clip(embedder, clips, b, args.repeats):.2f}" for b in (1, 8)]
            big = ms_per_clip(embedder, clips, 128, args.repeats)
            rows.append(f"| torch ({source}) | cuda | {precision} | {' | '.join(cells)} | {1000 / big:.0f} |")
            sim = cosine(embedder.embed(clips), reference)
            similarity.append(f"| {precision} | cuda | {sim.min():.6f} | {sim.mean():.6f} | {len(clips)} |")
            del embedder
    return rows, similarity


def tf_rows(args: argparse.Namespace, clips: np.ndarray) -> list[str]:
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return ["| tf | - | - | TensorFlow not installed | | |"]
    with tempfile.TemporaryDirectory() as scratch:
        if args.tf_dir:
            folder, source = Path(args.tf_dir), f"google/hear from {args.tf_dir}"
        else:
            folder = save_tf_standin(Path(scratch) / "standin")
            source = "STAND-IN SavedModel, not google/hear: its cost says nothing about HeAR's"
        embedder = TfHear.load(HearWeights("tf", folder, "local"))
        cells = [f"{ms_per_clip(embedder, clips, b, args.repeats):.1f}" for b in (1, 8)]
    return [f"| tf ({source}) | cpu | fp32 | {' | '.join(cells)} | |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-dir", help="a folder with google/hear-pytorch's model.safetensors (else random)")
    parser.add_argument("--tf-dir", help="a folder with google/hear's SavedModel (else a stand-in)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per cell (median reported)")
    parser.add_argument("--clips", type=int, default=8, help="real cry clips used for timing and cosine")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    clips, content = clips_for_bench(args.clips)
    print(f"machine: {machine()}")
    print(f"input: {len(clips)} clips of {content}; median of {args.repeats} timed calls after one warm-up\n")
    rows, similarity = torch_rows(args, clips)
    rows += tf_rows(args, clips)
    print("| backend | device | precision | ms/clip, batch 1 | ms/clip, batch 8 | clips/s, batch 128 |")
    print("|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\n| precision | device | cosine to fp32, min | mean | clips |")
    print("|---|---|---|---|---|")
    print("\n".join(similarity))


if __name__ == "__main__":
    main()
