"""Gated-window embeddings of every recording, cached on disk.

An entry is keyed by the SHA-1 of the file's bytes, the embedder id, the gate settings and the cry
detector's id (together they decide which windows exist and pass), so a refit never decodes or
embeds audio twice and a new embedder, gate or detector can never read stale vectors.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from monitor.audio import load_audio
from monitor.config import DetectorSettings, GateSettings, load_settings
from monitor.detect import DetectorModel, gate_recording
from monitor.embed import Embedder, make_embedder
from monitor.messages import WINDOW_SAMPLES
from train.datasets import Record

DEFAULT_CACHE = Path(os.environ.get("CRYWATCH_CACHE", "~/.cache/crywatch/embeddings")).expanduser()
_BATCH = 64


@dataclass(frozen=True)
class FileWindows:
    """Every gate decision of one recording and the embedding of each window (gated or not)."""

    starts: np.ndarray  # (n,) sample index of each window
    gated: np.ndarray  # (n,) bool: the live gate would pass this window to the head
    active: np.ndarray  # (n,) cry-activity fraction
    vectors: np.ndarray  # (n, dim) float32
    wave_sha1: str  # SHA-1 of the decoded 16 kHz waveform: finds the same audio under two names


def file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def embedder_name(embedder: str) -> str:
    """make_embedder's name for an embedder id or name: HeAR ids carry backend and revision (hear-torch@…)."""
    return "hear" if embedder.startswith("hear-") else embedder


@lru_cache(maxsize=4)
def embedder_for(name: str, config: str | None) -> Embedder:
    """One embedder per process, name and config (building one can load weights); the config
    file (default: the project's config.toml) supplies the [hear] settings, as for the monitor."""
    return make_embedder(load_settings(config).with_overrides(classifier={"embedder": name}))


@lru_cache(maxsize=2)
def _detector(folder: str) -> DetectorModel:
    return DetectorModel.load(folder)


def compute_windows(path: Path, name: str, gate: GateSettings, detector: str, config: str | None = None) -> FileWindows:
    samples = load_audio(path)
    decisions = gate_recording(samples, gate, _detector(detector))
    # Ungated windows are embedded too (as negatives) from the same span the gate judged.
    windows = np.stack([
        w.samples if w.samples is not None else np.pad(samples[w.start : w.end], (0, max(0, w.end - len(samples))))
        for w in decisions
    ]).astype(np.float32)
    assert windows.shape[1] == WINDOW_SAMPLES
    embedder = embedder_for(name, config)
    vectors = np.concatenate([embedder.embed(windows[i : i + _BATCH]) for i in range(0, len(windows), _BATCH)])
    return FileWindows(
        starts=np.array([w.start for w in decisions], np.int64),
        gated=np.array([w.gated for w in decisions], bool),
        active=np.array([w.active_fraction for w in decisions], np.float32),
        vectors=vectors.astype(np.float32),
        wave_sha1=hashlib.sha1(samples.tobytes()).hexdigest(),
    )


def _compute_job(job: tuple[Path, str, GateSettings, str, str | None]) -> FileWindows:
    return compute_windows(*job)


class EmbeddingCache:
    """npz files under root/<embedder id>/<gate+detector fingerprint>/<file sha1>.npz; counts hits and misses."""

    def __init__(self, root: Path, embedder: str, gate: GateSettings, config: str | None = None,
                 detector: Path | None = None):
        self.name, self.config = embedder_name(embedder), config
        self.embedder_id = embedder_for(self.name, config).id  # e.g. hear-torch@<commit>: keys vectors by what made them
        # A large model embeds on all cores by itself; one copy per worker process would only cost memory.
        self.in_process = self.name == "hear"
        self.gate = gate
        self.detector = str(detector or DetectorSettings().model_path())
        self.detector_id = _detector(self.detector).id
        key = json.dumps({**dataclasses.asdict(gate), "detector": self.detector_id}, sort_keys=True)
        fingerprint = hashlib.sha1(key.encode()).hexdigest()[:12]
        self.folder = Path(root).expanduser() / self.embedder_id / f"gate-{fingerprint}"
        self.hits = 0
        self.misses = 0

    def _entry(self, content_sha1: str) -> Path:
        return self.folder / f"{content_sha1}.npz"

    def get(self, content_sha1: str) -> FileWindows | None:
        entry = self._entry(content_sha1)
        if not entry.is_file():
            return None
        with np.load(entry) as npz:
            return FileWindows(npz["starts"], npz["gated"], npz["active"], npz["vectors"], str(npz["wave_sha1"]))

    def put(self, content_sha1: str, windows: FileWindows) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self._entry(content_sha1).with_suffix(".tmp.npz")
        np.savez(tmp, **{f.name: getattr(windows, f.name) for f in dataclasses.fields(windows)})
        tmp.replace(self._entry(content_sha1))  # atomic: a killed run never leaves half an entry

    def embed(self, records: list[Record], workers: int = 0) -> list[FileWindows]:
        """Windows of every record, in order; misses are computed on `workers` processes (0 = all cores)."""
        hashes = [file_sha1(r.path) for r in tqdm(records, desc="hash", unit="file", leave=False)]
        found = [self.get(h) for h in hashes]
        missing = [i for i, f in enumerate(found) if f is None]
        self.hits += len(records) - len(missing)
        self.misses += len(missing)
        jobs = [(records[i].path, self.name, self.gate, self.detector, self.config) for i in missing]
        workers = 1 if self.in_process else min(workers or os.cpu_count() or 1, max(1, len(jobs)))
        progress = tqdm(total=len(jobs), desc=f"embed {self.embedder_id}", unit="file", disable=not jobs)
        with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
            results = pool.map(_compute_job, jobs, chunksize=4) if pool else map(_compute_job, jobs)
            for i, windows in zip(missing, results):
                self.put(hashes[i], windows)
                found[i] = windows
                progress.update()
        progress.close()
        return found  # type: ignore[return-value]
