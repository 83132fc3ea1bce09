"""`crywatch` with `embedder = "hear"`: a clear error without weights, the whole service with stand-ins."""
from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from monitor.classify import Head
from tests.conftest import cry_path, pick, run_crywatch
from tests.hear_standins import REVISION, save_tf_standin, write_config

pytest.importorskip("tensorflow", reason="the tf backend needs tensorflow-cpu (the hear extra)")
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def test_hear_without_weights_is_one_clear_line(tmp_path):
    config = write_config(tmp_path / "config.toml", classifier={"embedder": "hear"},
                          hear={"backend": "auto", "cache_dir": str(tmp_path / "empty-cache")})
    result = run_crywatch("--config", str(config), "run", "--headless", "--input", "scenario:quiet",
                          env=OFFLINE)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("crywatch: error: ") and "crywatch model pull hear" in line


def test_the_service_runs_end_to_end_on_stand_in_weights(cries_index, tmp_path):
    standin = save_tf_standin(tmp_path / "hear-tf")
    # A head for the stand-in's id that always says "pain": the point is the plumbing, not the head.
    Head("hear-standin", f"hear-tf@{REVISION[:12]}", 512, ("not_cry", "pain"), {"pain": 0.5}, 1.0,
         np.zeros(512, np.float32), np.ones(512, np.float32),
         ((np.zeros((512, 2), np.float32), np.array([0.0, 5.0], np.float32)),)).save(tmp_path / "head")
    config = write_config(tmp_path / "config.toml",
                          classifier={"embedder": "hear", "head": str(tmp_path / "head")},
                          hear={"backend": "tf", "model_dir": str(standin), "revision": REVISION})
    [row] = pick(cries_index, 1, source="corvin", label="pain")
    db = tmp_path / "log.db"
    result = run_crywatch("--config", str(config), "run", "--headless", "--input", str(cry_path(row)), "--speed", "0",
                          "--db", f"sqlite:///{db}", "--bus", "tcp://127.0.0.1:*", timeout=300, env=OFFLINE)
    assert result.returncode == 0, result.stderr
    assert f"embedder hear-tf@{REVISION[:12]}, head hear-standin" in result.stdout
    assert "ALARM 1 [high] PAIN CRY" in result.stdout
    with sqlite3.connect(db) as conn:
        [(label, embedder_id)] = conn.execute("select label, embedder_id from episodes").fetchall()
    assert (label, embedder_id) == ("pain", f"hear-tf@{REVISION[:12]}")
