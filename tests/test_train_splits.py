"""Grouped splits and the leakage check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train.datasets import Record, read_index
from train.heads.cache import FileWindows
from train.heads.pipeline import FitConfig, holdout_fit
from train.labels import load_label_map
from train.splits import LeakageError, Split, check_leakage, grouped_folds, grouped_holdout

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cries"


def _records(groups: list[str], targets: list[str] | None = None) -> list[Record]:
    targets = targets or ["pain"] * len(groups)
    return [Record(Path(f"/x/{i}.wav"), f"{i}.wav", "src", t, t, g) for i, (g, t) in enumerate(zip(groups, targets))]


def test_leakage_check_passes_a_clean_split():
    records = _records(["a", "a", "b", "c"])
    check_leakage(records, Split(np.array([0, 1]), np.array([2, 3])), ["h0", "h1", "h2", "h3"])


def test_leakage_check_fails_when_a_group_is_on_both_sides():
    records = _records(["a", "a", "b"])
    with pytest.raises(LeakageError, match="src/a"):
        check_leakage(records, Split(np.array([0]), np.array([1, 2])))


def test_leakage_check_fails_on_identical_audio_under_two_groups():
    records = _records(["a", "b", "c"])
    with pytest.raises(LeakageError, match="identical audio"):
        check_leakage(records, Split(np.array([0, 1]), np.array([2])), ["same", "other", "same"])


def test_a_run_fails_when_two_groups_hold_the_same_waveform():
    """holdout_fit (what `train fit` calls) refuses to train once identical audio sits under different groups."""
    groups = [f"g{i}" for i in range(20)]
    targets = ["not_cry", "pain"] * 10
    records = _records(groups, targets)
    rng = np.random.default_rng(0)
    windows = [FileWindows(np.zeros(2, np.int64), np.ones(2, bool), np.ones(2, np.float32),
                           rng.normal(size=(2, 4)).astype(np.float32), "one-waveform") for _ in records]
    with pytest.raises(LeakageError):
        holdout_fit(records, windows, ("not_cry", "pain"), FitConfig(embedder="test", model="logistic"), "leaky")


@pytest.fixture(scope="module")
def real_records() -> list[Record]:
    if not (DATA / "index.csv").is_file():
        pytest.skip(f"cry data not present at {DATA} (a fresh machine has none)")
    return read_index(DATA / "index.csv", load_label_map())


def test_grouped_folds_never_split_a_group_on_the_real_index(real_records):
    folds = grouped_folds(real_records, 5, seed=0)
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(len(real_records)))
    for fold in folds:
        train = {real_records[i].key for i in fold.train}
        test = {real_records[i].key for i in fold.test}
        assert not train & test
        check_leakage(real_records, fold)
        # every source is represented on the test side
        assert {real_records[i].source for i in fold.test} == {"corvin", "donateacry", "esc50", "fsdd"}


def test_grouped_holdout_keeps_corvin_babies_whole(real_records):
    split = grouped_holdout(real_records, 0.2, seed=0)
    test_babies = {real_records[i].group for i in split.test if real_records[i].source == "corvin"}
    train_babies = {real_records[i].group for i in split.train if real_records[i].source == "corvin"}
    assert test_babies and not test_babies & train_babies
