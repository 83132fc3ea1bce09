"""Detector split, mixing primitives, the fixed mixtures and the sed_eval event benchmark."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from monitor.audio import load_audio
from monitor.messages import SAMPLE_RATE
from tests.conftest import CRIES
from train.cli import main
from train.datasets import Record, read_dataset
from train.detector.mixing import (
    FRAME_HOP,
    NICU_KINDS,
    SIDES,
    TrainingMixer,
    check_detector_split,
    cry_frames,
    detector_split,
    event_bounds,
    mix_at_ebr,
    nicu_sound,
)
from train.labels import load_label_map
from train.splits import LeakageError


def _record(i: int, source: str, label: str, target: str, group: str) -> Record:
    return Record(Path(f"/x/{i}.wav"), f"{i}.wav", source, label, target, group)


def _hand_records() -> list[Record]:
    """Cries of 10 babies, dogs of 5 recordings and speech of 5 speakers, 2 files per group."""
    specs = [("corvin", "pain", "pain", f"b{g}") for g in range(10)]
    specs += [("esc50", "dog", "not_cry", f"d{g}") for g in range(5)]
    specs += [("fsdd", "speech", "not_cry", f"s{g}") for g in range(5)]
    return [_record(2 * i + k, *spec) for i, spec in enumerate(specs) for k in range(2)]


@pytest.fixture(scope="module")
def records(cries_index) -> list[Record]:
    return read_dataset(CRIES / "index.csv", load_label_map())


def test_detector_split_keeps_groups_on_one_side_and_every_stratum_in_train_and_test():
    splits = detector_split(_hand_records(), seed=3)
    keys = {side: {r.key for r in splits[side]} for side in SIDES}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    assert sum(len(v) for v in keys.values()) == 20
    for side in ("train", "test"):
        assert {(r.source, r.label) for r in splits[side]} == {("corvin", "pain"), ("esc50", "dog"), ("fsdd", "speech")}


def test_a_group_planted_on_two_sides_raises_leakage():
    splits = detector_split(_hand_records(), seed=0)
    planted = splits["train"][0]
    splits["test"] = [*splits["test"], _record(999, planted.source, planted.label, planted.target, planted.group)]
    with pytest.raises(LeakageError, match=planted.key):
        check_detector_split(splits)


def test_detector_split_on_the_real_index(records):
    splits = detector_split(records, seed=0)
    keys = {side: {r.key for r in splits[side]} for side in SIDES}
    assert not keys["train"] & keys["test"] and not keys["val"] & keys["test"] and not keys["train"] & keys["val"]
    for side in ("train", "val", "test"):
        assert {r.source for r in splits[side]} == {"corvin", "donateacry", "esc50", "fsdd"}
    assert 0.5 < len(keys["train"]) / len({r.key for r in records}) < 0.7


def test_mix_at_ebr_gives_the_requested_ratio():
    rng = np.random.default_rng(0)
    background = (rng.standard_normal(5 * SAMPLE_RATE) * 0.01).astype(np.float32)
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    event = np.where((t > 0.5) & (t < 1.5), np.sin(2 * np.pi * 440 * t), 0.0).astype(np.float32)
    position = 32000
    for ebr in (-9.0, 0.0, 6.0):
        mixed = mix_at_ebr(background, event, position, ebr)
        added = mixed[position: position + len(event)] - background[position: position + len(event)]
        mask = cry_frames(event)
        ev = added.reshape(-1, FRAME_HOP)[mask]
        bg = background[position: position + len(event)].reshape(-1, FRAME_HOP)[mask]
        measured = 10 * np.log10(np.mean(ev.astype(np.float64) ** 2) / np.mean(bg.astype(np.float64) ** 2))
        assert abs(measured - ebr) < 0.5


def test_cry_frames_finds_the_burst():
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    x = (np.where((t >= 1.0) & (t < 2.0), np.sin(2 * np.pi * 500 * t), 0.0) + 1e-4 * np.sin(2 * np.pi * 50 * t))
    onset, offset = event_bounds(x.astype(np.float32))
    assert abs(onset / SAMPLE_RATE - 1.0) <= 0.02 and abs(offset / SAMPLE_RATE - 2.0) <= 0.02


def _pulses(x: np.ndarray) -> np.ndarray:
    """Start times (s) of the envelope's runs above -20 dB re peak, on 5 ms frames."""
    hop = SAMPLE_RATE // 200
    env = np.sqrt(np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    on = (env > 0.1 * env.max()).astype(int)
    return np.flatnonzero(np.diff(np.concatenate([[0], on])) == 1) * hop / SAMPLE_RATE


@pytest.mark.parametrize("kind", NICU_KINDS)
def test_nicu_sounds_are_finite_and_audible(kind):
    x = nicu_sound(kind, np.random.default_rng(1), 30.0)
    assert x.dtype == np.float32 and len(x) == 30 * SAMPLE_RATE
    assert np.isfinite(x).all() and np.max(np.abs(x)) == pytest.approx(1.0, abs=1e-6)
    assert np.sqrt(np.mean(x**2)) > 1e-3


def test_nicu_sound_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="alarm_high"):
        nicu_sound("alarm_urgent", np.random.default_rng(0), 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_high_priority_alarm_has_bursts_of_ten_pulses(seed):
    onsets = _pulses(nicu_sound("alarm_high", np.random.default_rng(seed), 40.0))
    bursts = np.split(onsets, np.flatnonzero(np.diff(onsets) > 2.0) + 1)
    complete = bursts[1:-1]  # the first and last may be cut by the clip's edges
    assert complete and all(len(b) == 10 for b in complete)


def test_medium_priority_alarm_has_bursts_of_three_pulses():
    onsets = _pulses(nicu_sound("alarm_medium", np.random.default_rng(0), 40.0))
    bursts = np.split(onsets, np.flatnonzero(np.diff(onsets) > 2.0) + 1)
    assert bursts[1:-1] and all(len(b) == 3 for b in bursts[1:-1])


def _mixer(records: list[Record], p_cry: float) -> TrainingMixer:
    train = detector_split(records, seed=0)["train"]
    cries = [r for r in train if r.target != "not_cry"][:6]
    negatives = [r for r in train if r.target == "not_cry"][::40]
    return TrainingMixer(cries, negatives, seed=0, p_cry=p_cry)


def test_training_examples_have_aligned_labels(records):
    mixer = _mixer(records, p_cry=1.0)
    rng = np.random.default_rng(0)
    positives = 0
    for _ in range(8):
        samples, labels = mixer.example(10.0, rng)
        assert samples.dtype == np.float32 and labels.dtype == np.float32
        assert len(labels) == len(samples) // FRAME_HOP == 500
        assert np.isfinite(samples).all() and np.max(np.abs(samples)) <= 1.0
        positives += labels.any()
    assert positives >= 6  # a crop of a long clip may, rarely, hold no crying


def test_cry_free_training_examples_have_zero_labels(records):
    mixer = _mixer(records, p_cry=0.0)
    for _ in range(4):
        samples, labels = mixer.example(7.3)
        assert len(labels) == len(samples) // FRAME_HOP and not labels.any()


def _read(folder: Path) -> list[dict[str, str]]:
    with (folder / "mixtures.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def mixtures(cries_index, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mix") / "a"
    assert main(["mixtures", "--data", str(CRIES / "index.csv"), "--out", str(out), "--count", "6", "--seed", "0"]) == 0
    return out


def test_mixtures_are_deterministic(mixtures, tmp_path):
    again = tmp_path / "b"
    assert main(["mixtures", "--data", str(CRIES / "index.csv"), "--out", str(again), "--count", "6", "--seed", "0"]) == 0
    assert (again / "mixtures.csv").read_text() == (mixtures / "mixtures.csv").read_text()
    for row in _read(mixtures):
        assert np.array_equal(load_audio(mixtures / row["filename"]), load_audio(again / row["filename"]))
    meta = json.loads((mixtures / "meta.json").read_text())
    assert meta["seed"] == 0 and meta["split"] == "test" and set(meta["cry_groups_used"]) <= set(meta["split_groups"])


TODAY_S_MIXTURES = """\
filename,ebr_db,cry,onset_s,offset_s,cry_path,cry_group,backgrounds
mix0000.flac,-6,1,17.624,22.624,esc50/4-185575-B-20.flac,esc50/185575,fan;snoring;speech;toilet_flush
mix0001.flac,,0,,,,,church_bells;cpap;snoring
mix0002.flac,0,1,15.779,20.579,esc50/3-152007-E-20.flac,esc50/152007,alarm_low;cpap;speech
mix0003.flac,,0,,,,,fan;sea_waves;speech;water_drops
mix0004.flac,6,1,14.177,18.937,corvin/BEL_D04.flac,corvin/BEL,chirping_birds;cpap;frog;pig;speech
mix0005.flac,,0,,,,,alarm_low;hen;siren;speech;vacuum_cleaner
"""


def test_default_mixtures_are_what_they_were_before_the_hard_benchmark(mixtures):
    """Written before the second collection, the cross-collection groups and the --hard kinds existed (2026-11)."""
    assert (mixtures / "mixtures.csv").read_text().replace("\r\n", "\n") == TODAY_S_MIXTURES


def test_mixture_rows_cover_the_ebrs_and_use_only_test_groups(mixtures, records):
    rows = _read(mixtures)
    assert [r["cry"] for r in rows] == ["1", "0"] * 3
    assert [r["ebr_db"] for r in rows if r["cry"] == "1"] == ["-6", "0", "6"]
    assert all(r["onset_s"] == "" for r in rows if r["cry"] == "0")
    test_groups = {r.key for r in detector_split(records, seed=0)["test"]}
    assert {r["cry_group"] for r in rows if r["cry"] == "1"} <= test_groups
    for row in rows:
        assert 1.0 <= float(row["onset_s"] or 1) and float(row["offset_s"] or 29) <= 29.0


def test_mixture_onsets_are_where_the_cry_is(mixtures):
    """Cross-correlating the mixture with its cry clip finds the placement; onset = placement + the clip's own onset."""
    for row in (r for r in _read(mixtures) if r["cry"] == "1"):
        mixture = load_audio(mixtures / row["filename"])
        clip = load_audio(CRIES / row["cry_path"])[: len(mixture) - 2 * SAMPLE_RATE]
        lag = int(np.argmax(signal.fftconvolve(mixture, clip[::-1], mode="valid")))
        onset, offset = event_bounds(clip)
        assert float(row["onset_s"]) == pytest.approx((lag + onset) / SAMPLE_RATE, abs=0.02)
        assert float(row["offset_s"]) == pytest.approx((lag + offset) / SAMPLE_RATE, abs=0.02)


def test_evaluate_events_without_mixtures_is_a_user_error(tmp_path, capsys):
    assert main(["evaluate-events", "--mixtures", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_events_end_to_end(cries_index, tmp_path, capsys):
    out = tmp_path / "mix"
    assert main(["mixtures", "--data", str(CRIES / "index.csv"), "--out", str(out), "--count", "4", "--seed", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate-events", "--mixtures", str(out)]) == 0
    table = capsys.readouterr().out
    for figure in ("ER", "F1", "false episodes / hour", "recall by EBR", "x real time"):
        assert figure in table
    assert main(["evaluate-events", "--mixtures", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["files"] == 4 and result["cry_files"] == 2
    assert set(result["ci95"]) == {"er", "f1", "false_episodes_per_hour"}
    assert result["overall"]["Nref"] == 2


def test_the_shipped_detector_s_hard_negatives_are_its_known_confusions(records):
    """Mining on training groups: every training cat is a confusion of v1; sea waves and rain are not."""
    from monitor.config import DetectorSettings
    from monitor.detect import DetectorModel
    from train.detector.training import mine_hard_negatives

    train = detector_split(records, seed=0)["train"]
    cats = [r for r in train if r.label == "cat"]
    calm = [r for r in train if r.label in ("sea_waves", "rain", "wind")]
    assert cats and calm
    hard = mine_hard_negatives(DetectorModel.load(DetectorSettings().model_path()), cats + calm)
    assert {r.key for r in hard} >= {r.key for r in cats} and len([r for r in hard if r in calm]) <= 1


def test_hard_negatives_change_only_their_share_of_examples(records):
    train = detector_split(records, seed=0)["train"]
    cries = [r for r in train if r.target != "not_cry"][:6]
    negatives = [r for r in train if r.target == "not_cry"][::40]
    cats = [r for r in train if r.label == "cat"]
    plain = TrainingMixer(cries, negatives, seed=0, p_cry=0.0)
    unused = TrainingMixer(cries, negatives, seed=0, p_cry=0.0, hard=cats, p_hard=0.0)
    always = TrainingMixer(cries, negatives, seed=0, p_cry=0.0, hard=cats, p_hard=1.0)
    level = {"plain": [], "always": []}
    for _ in range(16):
        a, b, c = (m.example(8.0)[0] for m in (plain, unused, always))
        np.testing.assert_array_equal(a, b)  # without hard negatives, v1's examples are reproduced exactly
        level["plain"].append(20 * np.log10(np.sqrt(np.mean(a ** 2))))
        level["always"].append(20 * np.log10(np.sqrt(np.mean(c ** 2))))
    # A meow at -35..-10 dBFS over backgrounds whose clips sit at -40..-20 (both under a random +-10 dB gain).
    assert np.mean(level["always"]) - np.mean(level["plain"]) >= 3.0, level


def _first_cry_frame(labels: np.ndarray) -> int | None:
    active = np.flatnonzero(labels >= 0.5)
    return int(active[0]) if len(active) else None


def test_late_onsets_put_cry_onsets_after_background_and_keep_v1_without_them(records):
    train = detector_split(records, seed=0)["train"]
    cries = [r for r in train if r.target != "not_cry"][::12]
    negatives = [r for r in train if r.target == "not_cry"][::40]
    plain, unused, late = (TrainingMixer(cries, negatives, seed=0, p_cry=1.0, p_late=p) for p in (0.0, 0.0, 1.0))
    onsets: dict[str, list[int]] = {"plain": [], "late": []}
    for _ in range(24):
        (a, la), (b, _), (c, lc) = (m.example(8.0) for m in (plain, unused, late))
        np.testing.assert_array_equal(a, b)  # p_late 0 draws nothing: v1's examples are reproduced exactly
        assert len(c) == len(lc) * FRAME_HOP == 8 * SAMPLE_RATE
        for key, labels in (("plain", la), ("late", lc)):
            if (first := _first_cry_frame(labels)) is not None:
                onsets[key].append(first)
    # Long cries can only start early when placed whole; placed late, onsets spread over the example.
    assert np.median(onsets["late"]) * 0.02 >= 2.5 and max(onsets["late"]) >= 300, onsets
    assert np.median(onsets["late"]) >= np.median(onsets["plain"]) + 50, onsets


def test_onset_weights_cover_each_onset_only():
    from train.detector.training import ONSET_AFTER, ONSET_BEFORE, onset_weights

    targets = np.zeros((2, 200), np.float32)
    targets[0, 100:180] = 1.0
    targets[1, 0:40] = 1.0  # a cry already under way when the example starts has no onset to weight
    weights = onset_weights(targets, 3.0)
    assert (weights[0, 100 - ONSET_BEFORE: 100 + ONSET_AFTER] == 3.0).all()
    assert (weights[0, : 100 - ONSET_BEFORE] == 1.0).all() and (weights[0, 100 + ONSET_AFTER:] == 1.0).all()
    assert (weights[1] == 1.0).all()
    assert (onset_weights(targets, 1.0) == 1.0).all()
