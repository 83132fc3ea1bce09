"""Embedding cache: keyed by file content + embedder id (+ gate settings); a second run only reads."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from monitor.config import GateSettings
from train.datasets import Record
from train.heads.cache import EmbeddingCache


def _cry_like(seconds: float, f0: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    bursts = (np.sin(2 * np.pi * 1.0 * t) > -0.3).astype(float)  # ~1 s cry units with pauses
    voice = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    return (0.3 * bursts * voice + 0.001 * np.random.default_rng(0).normal(size=len(t))).astype(np.float32)


def _records(tmp_path: Path) -> list[Record]:
    records = []
    for i, (rate, f0) in enumerate(((16000, 450.0), (8000, 520.0), (44100, 380.0))):
        path = tmp_path / f"clip{i}.wav"
        soundfile.write(path, _cry_like(4.0, f0, rate), rate)
        records.append(Record(path, path.name, "synthetic", "pain", "pain", f"g{i}"))
    return records


def test_second_run_reads_every_file_from_the_cache(tmp_path):
    records = _records(tmp_path)
    first = EmbeddingCache(tmp_path / "cache", "acoustic-v1", GateSettings())
    computed = first.embed(records, workers=1)
    assert (first.hits, first.misses) == (0, 3)

    second = EmbeddingCache(tmp_path / "cache", "acoustic-v1", GateSettings())
    cached = second.embed(records, workers=1)
    assert (second.hits, second.misses) == (3, 0)
    for a, b in zip(computed, cached):
        np.testing.assert_array_equal(a.vectors, b.vectors)
        np.testing.assert_array_equal(a.gated, b.gated)
        assert a.wave_sha1 == b.wave_sha1
    assert computed[0].vectors.shape[1] == 141


def test_cache_key_is_content_and_embedder_id(tmp_path):
    records = _records(tmp_path)
    EmbeddingCache(tmp_path / "cache", "acoustic-v1", GateSettings()).embed(records, workers=1)

    other_embedder = EmbeddingCache(tmp_path / "cache", "acoustic-v2", GateSettings())
    other_embedder.embed(records[:1], workers=1)
    assert (other_embedder.hits, other_embedder.misses) == (0, 1)

    other_gate = EmbeddingCache(tmp_path / "cache", "acoustic-v1", GateSettings(min_active_fraction=0.5))
    other_gate.embed(records[:1], workers=1)
    assert other_gate.misses == 1

    # Same name, new content: a miss. Same content under a new name: a hit.
    soundfile.write(records[1].path, _cry_like(4.0, 600.0, 8000), 8000)
    renamed = tmp_path / "renamed.wav"
    renamed.write_bytes(records[2].path.read_bytes())
    again = EmbeddingCache(tmp_path / "cache", "acoustic-v1", GateSettings())
    again.embed([records[1], Record(renamed, renamed.name, "synthetic", "pain", "pain", "g9")], workers=1)
    assert (again.hits, again.misses) == (1, 1)
