"""Load generator for `crywatch serve-embedder` (a benchmark, not a test; loopback only).

Two measurements, each bounded in time, printed as markdown tables with the machine:
  * closed loop: C callers each send one-clip requests back to back -> clips/s and latency
    percentiles per C (dynamic batching shows as clips/s rising with C at a similar latency);
  * beds: N simulated beds each send one clip per second (open loop, evenly phased) -> latency
    percentiles counted from when each clip was due, so a server that falls behind shows it.

Without --url it starts its own server on stand-in weights (the cost does not depend on the
weights): `--model small` (2 layers, width 128: the batching machinery's cost) or `full` (HEAR.md's
ViT-L/16, random weights: the real model's cost).

    python bench/bench_serve.py [--url http://127.0.0.1:8500] [--model small|full] [--device cpu|cuda]
        [--precision fp32|bf16] [--concurrency 1 2 4 8 16 32] [--beds 50 200] [--seconds 10]
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.hear_standins (the stand-in builders) when run as a script

from bench.machine import cpu_model, load_average  # noqa: E402
from monitor.config import is_local  # noqa: E402
from monitor.embed import EmbedderError  # noqa: E402
from monitor.embed.remote import RemoteEmbedder  # noqa: E402
from monitor.messages import WINDOW_SAMPLES  # noqa: E402
from tests.hear_standins import HEAR_VIT, REVISION, SMALL_VIT, hf_vit, write_config, write_torch_weights  # noqa: E402

MAX_SECONDS = 120  # per measurement
MAX_BEDS = 5000
MAX_CALLERS = 512


def percentiles(latencies: list[float]) -> str:
    if len(latencies) < 2:
        return "- | - | -"
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return " | ".join(f"{1000 * cuts[p - 1]:.1f}" for p in (50, 95, 99))


class Tally:
    """One row's measurements: the server's counters before it, and each request's latency or failure."""

    def __init__(self, embedder: RemoteEmbedder):
        self._embedder = embedder
        self._lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors = 0
        self._clips, self._batches = self._served()

    def _served(self) -> tuple[int, int]:
        served = self._embedder.info()["served"]
        return int(served["clips"]), int(served["batches"])

    def send(self, clip: np.ndarray, since: float) -> None:
        """One request; its latency counts from `since`."""
        try:
            self._embedder.embed(clip)
        except EmbedderError:
            with self._lock:
                self.errors += 1
            return
        with self._lock:
            self.latencies.append(time.monotonic() - since)

    def row(self, label: int, elapsed: float) -> str:
        clips, batches = self._served()
        mean_batch = (clips - self._clips) / max(1, batches - self._batches)
        return (f"| {label} | {len(self.latencies) / elapsed:.1f} | {mean_batch:.1f} | {percentiles(self.latencies)} "
                f"| {self.errors} |")


def closed_loop(embedder: RemoteEmbedder, callers: int, seconds: float, clip: np.ndarray) -> str:
    tally = Tally(embedder)
    deadline = time.monotonic() + seconds

    def caller() -> None:
        while time.monotonic() < deadline:
            tally.send(clip, time.monotonic())

    started = time.monotonic()
    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally.row(callers, time.monotonic() - started)


def beds(embedder: RemoteEmbedder, count: int, seconds: float, clip: np.ndarray) -> str:
    """Each bed sends one clip a second; bed i's clips are due at i/count + k seconds."""
    tally = Tally(embedder)
    start = time.monotonic() + 0.5
    due = sorted(start + k + i / count for k in range(int(seconds)) for i in range(count))
    with ThreadPoolExecutor(min(count, MAX_CALLERS)) as pool:
        for when in due:
            delay = when - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(tally.send, clip, when)  # from when it was due: a late send counts
    return tally.row(count, time.monotonic() - start)


def start_server(folder: Path, model: str, device: str, precision: str, max_batch: int,
                 delay_ms: float) -> tuple[subprocess.Popen[str], str]:
    weights = write_torch_weights(folder / "weights", hf_vit(HEAR_VIT if model == "full" else SMALL_VIT), "4.x")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_config(folder / "server.toml",
                          hear={"backend": "torch", "model_dir": str(weights), "revision": REVISION, "device": device,
                                "precision": precision},
                          serve={"port": port, "max_batch": max_batch, "queue_delay_ms": delay_ms})
    process = subprocess.Popen([sys.executable, "-m", "monitor.cli", "--config", str(config), "serve-embedder"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    output = process.stdout
    assert output is not None
    for line in output:
        if "crywatch: serving" in line:
            threading.Thread(target=output.read, daemon=True).start()  # keeps the server's pipe from filling
            return process, f"http://127.0.0.1:{port}"
    raise SystemExit(f"serve-embedder did not start (exit {process.wait()})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server on this machine (default: start one)")
    parser.add_argument("--model", choices=("small", "full"), default="small")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--queue-delay-ms", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--beds", type=int, nargs="*", default=[])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if args.url and not is_local(f"tcp://{urlsplit(args.url).hostname}:0"):
        raise SystemExit(f"{args.url} is not on this machine: this load generator only loads loopback servers")
    if args.seconds > MAX_SECONDS or any(c > MAX_CALLERS for c in args.concurrency) or any(b > MAX_BEDS for b in args.beds):
        raise SystemExit(f"bounded: at most {MAX_SECONDS} s, {MAX_CALLERS} callers, {MAX_BEDS} beds")

    with tempfile.TemporaryDirectory() as folder:
        process = None
        url = args.url
        if url is None:
            process, url = start_server(Path(folder), args.model, args.device, args.precision, args.max_batch,
                                        args.queue_delay_ms)
        try:
            embedder = RemoteEmbedder(url, timeout_s=30)
            clip = (0.1 * np.random.default_rng(0).standard_normal((1, WINDOW_SAMPLES))).astype(np.float32)
            embedder.embed(clip)  # warm-up
            what = "" if args.url else f"{args.model} stand-in model, {args.device}, {args.precision}, "
            print(f"{embedder.id} at {url}: {what}max batch {args.max_batch}, queue delay {args.queue_delay_ms} ms")
            print(f"{cpu_model()}, {os.cpu_count()} logical CPUs; load average {load_average()}; "
                  f"{args.seconds:g} s per row\n")
            if args.concurrency:
                print("| callers | clips/s | mean batch | p50 ms | p95 ms | p99 ms | errors |\n|---|---|---|---|---|---|---|")
                for callers in args.concurrency:
                    print(closed_loop(embedder, callers, args.seconds, clip), flush=True)
            if args.beds:
                print("\n| beds (1 clip/s each) | clips/s | mean batch | p50 ms | p95 ms | p99 ms | errors |\n"
                      "|---|---|---|---|---|---|---|")
                for count in args.beds:
                    print(beds(embedder, count, args.seconds, clip), flush=True)
        finally:
            if process is not None:
                process.terminate()
                process.wait(60)


if __name__ == "__main__":
    main()
