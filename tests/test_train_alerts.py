"""Alert thresholds chosen on validation groups (train/detector/alerts.py, `python -m train tune-alerts`)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from monitor.analyze import analyze_samples
from monitor.audio import load_audio
from monitor.config import PROJECT_ROOT
from monitor.pipeline import Models
from tests.conftest import cry_path
from train.detector.alerts import alert_levels, choose_threshold


def test_the_threshold_is_the_lowest_that_keeps_every_cry_free_mixture_silent():
    cries = np.array([0.95, 0.9, 0.88, 0.85, 0.8, 0.78, 0.75, 0.7, 0.66, 0.62, 0.45])  # 10 of 11 at or above 0.6
    cry_free = np.array([0.59, 0.5, 0.42, 0.1, 0.0])
    tuning = choose_threshold("pain", 0.36, cries, cry_free)
    assert tuning.chosen == pytest.approx(0.60) and tuning.met
    assert tuning.cry_rate == pytest.approx(10 / 11) and tuning.cry_free_alerts_at_head_threshold == 3
    on_the_grid = choose_threshold("pain", 0.36, cries, np.array([0.6]))  # a level on the grid must not alert
    assert on_the_grid.chosen == pytest.approx(0.61)


def test_a_threshold_that_silences_the_room_but_loses_cries_is_kept_and_flagged():
    cries = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    tuning = choose_threshold("pain", 0.4, cries, np.array([0.55, 0.45]))
    assert tuning.chosen == pytest.approx(0.56) and not tuning.met and tuning.cry_rate == pytest.approx(0.4)
    assert choose_threshold("pain", 0.4, cries, np.array([])).chosen == pytest.approx(0.01)  # no cry-free audio


def test_alert_level_is_exactly_where_the_monitor_starts_alerting(settings, held_out):
    """The tuning's number for a recording must agree with the running classifier's alert decision."""
    pain = [r for r in held_out if r["source"] == "corvin" and r["label"] == "pain"][:3]
    if not pain:
        pytest.skip("no vaccination cry among the held-out recordings")
    settings = settings.with_overrides(detector={"model": str(PROJECT_ROOT / "models" / "cry-detector-v2")},
                                       classifier={"head": str(PROJECT_ROOT / "models" / "acoustic-v3")})
    models = Models.load(settings)
    for row in pain:
        samples = load_audio(cry_path(row))
        level = alert_levels(samples, settings, models, ("pain",))["pain"]
        for threshold in (level - 0.01, level + 0.01):
            tuned = settings.with_overrides(alerts={"thresholds": {"pain": round(threshold, 4)}})
            episodes = analyze_samples(samples, tuned, models)[1]["episodes"]
            assert any("pain" in e["alerts"] for e in episodes) == (threshold <= level), (row["path"], level, threshold)


def test_tune_alerts_refuses_mixtures_of_the_test_groups(tmp_path):
    folder = tmp_path / "mixtures"
    folder.mkdir()
    (folder / "mixtures.csv").write_text("filename,cry\n")
    (folder / "meta.json").write_text(json.dumps({"split": "test", "split_seed": 0}))
    result = subprocess.run([sys.executable, "-m", "train", "tune-alerts", "--head", str(tmp_path / "head"), "--data",
                             str(tmp_path / "index.csv"), "--mixtures", str(folder)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "'test'-group mixtures: tune on validation groups only" in result.stderr
    assert result.stderr.strip().count("\n") == 0
