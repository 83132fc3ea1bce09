"""train/ embeds with HeAR exactly as the monitor does: the [hear] settings of a config file,
vectors cached under the running embedder's id, heads stamped with that id."""
from __future__ import annotations

import pytest

from monitor.config import GateSettings
from tests.conftest import cry_path, pick
from tests.hear_standins import REVISION, save_tf_standin, write_config
from train.datasets import Record
from train.heads.cache import EmbeddingCache

pytest.importorskip("tensorflow", reason="the tf backend needs tensorflow-cpu (the hear extra)")


def test_hear_embeddings_are_cached_under_the_running_embedders_id(cries_index, tmp_path):
    standin = save_tf_standin(tmp_path / "hear-tf")
    config = write_config(tmp_path / "config.toml", hear={"backend": "tf", "model_dir": str(standin),
                                                          "revision": REVISION})
    rows = pick(cries_index, 2, source="corvin")
    records = [Record(cry_path(r), r["path"], r["source"], r["label"], "pain", r["group"]) for r in rows]

    cache = EmbeddingCache(tmp_path / "cache", "hear", GateSettings(), str(config))
    windows = cache.embed(records)
    assert cache.embedder_id == f"hear-tf@{REVISION[:12]}"
    assert all(w.vectors.shape[1] == 512 and len(w.vectors) == len(w.gated) for w in windows)
    assert cache.folder.parent.name == cache.embedder_id

    # A head stamped "hear-tf@…" finds the same cache entries again.
    again = EmbeddingCache(tmp_path / "cache", cache.embedder_id, GateSettings(), str(config))
    again.embed(records)
    assert (again.hits, again.misses) == (2, 0)
