"""The second collection (../shared/data/more): reader, groups across collections, the split, the confusers, --hard."""
from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile

from monitor.messages import SAMPLE_RATE
from tests.conftest import CRIES, SHARED
from train.cli import main
from train.datasets import DataError, Record, more_index, read_dataset, read_index
from train.detector.mixing import (
    BEEP_BAND_HZ,
    BUZZ_BAND_HZ,
    HARD_KINDS,
    SIDES,
    BackgroundMaker,
    check_detector_split,
    detector_split,
    nicu_sound,
)
from train.labels import LabelError, load_label_map
from train.splits import LeakageError, grouped_folds

MORE = SHARED / "data" / "more"
NO_MORE = f"needs the second collection in {MORE} (present on CryWatch development machines and CI only)"


def _record(i: int, source: str, label: str, target: str, group: str) -> Record:
    return Record(Path(f"/x/{i}.wav"), f"{i}.wav", source, label, target, group)


@pytest.fixture(scope="module")
def cries() -> list[Record]:
    if not (CRIES / "index.csv").is_file():
        pytest.skip(f"needs the real cry data in {CRIES}")
    return read_dataset(CRIES / "index.csv", load_label_map())


@pytest.fixture(scope="module")
def more() -> list[Record]:
    if not (MORE / "index.csv").is_file():
        pytest.skip(NO_MORE)
    return read_dataset(MORE / "index.csv", load_label_map())


# ---------------------------------------------------------------------------------------------
# Reader and groups


def _write_index(folder: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    """rows of (source, label, cry, group); one short silent file each."""
    with (folder / "index.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "source", "label", "cry", "group"])
        for i, (source, label, cry, group) in enumerate(rows):
            soundfile.write(folder / f"{i}.flac", np.zeros(1600, np.int16), SAMPLE_RATE)
            writer.writerow([f"{i}.flac", source, label, cry, group])
    return folder / "index.csv"


def test_the_reader_takes_donateacry_raw_targets_from_the_cry_column_and_leaves_unknowns_out(tmp_path):
    index = _write_index(tmp_path, [("donateacry_raw", "Speech", "1", "a"), ("donateacry_raw", "Crying, sobbing", "0", "a"),
                                    ("donateacry_raw", "Silence", "", "b"), ("deeply", "adult_crying", "0", "s1"),
                                    ("us8k", "siren", "0", "123")])
    records = read_index(index, load_label_map())
    assert [(r.source, r.label, r.target) for r in records] == [
        ("donateacry_raw", "Speech", "other_cry"), ("donateacry_raw", "Crying, sobbing", "not_cry"),
        ("deeply", "adult_crying", "not_cry"), ("us8k", "siren", "not_cry")]


def test_a_new_source_no_rule_covers_is_still_an_error(tmp_path):
    with pytest.raises(LabelError, match="newcorpus"):
        read_index(_write_index(tmp_path, [("newcorpus", "yelp", "0", "g")]), load_label_map())


def test_the_real_more_collection_reads_as_documented(more):
    assert Counter(r.source for r in more) == {"us8k": 1762, "donateacry_raw": 408, "deeply": 279}  # 520 - 112 unknown
    with (MORE / "index.csv").open(newline="") as f:
        cry = {row["path"]: row["cry"] for row in csv.DictReader(f)}
    assert all((r.target != "not_cry") == (cry[r.rel] == "1") for r in more)


def test_one_installation_or_freesound_recording_is_one_group_across_collections():
    raw, cleaned = _record(0, "donateacry_raw", "Speech", "not_cry", "abc"), _record(1, "donateacry", "hungry", "hunger", "abc")
    us8k, esc50 = _record(2, "us8k", "siren", "not_cry", "123"), _record(3, "esc50", "siren", "not_cry", "123")
    assert raw.split_key == cleaned.split_key == "donateacry/abc" and us8k.split_key == esc50.split_key == "freesound/123"
    assert raw.key == "donateacry_raw/abc" and esc50.key == "esc50/123"  # what the shipped metadata and mixtures name


def test_the_more_index_defaults_to_the_collection_beside_the_data(tmp_path):
    (tmp_path / "cries").mkdir()
    (tmp_path / "more").mkdir()
    with pytest.raises(DataError, match="--more"):
        more_index(tmp_path / "cries" / "index.csv")
    (tmp_path / "more" / "index.csv").write_text("path,label,group\n")
    assert more_index(tmp_path / "cries" / "index.csv") == tmp_path / "more" / "index.csv"
    assert more_index(tmp_path / "cries", tmp_path / "x.csv") == tmp_path / "x.csv"


# ---------------------------------------------------------------------------------------------
# The split


def _hand_collections() -> tuple[list[Record], list[Record]]:
    """Cries of 10 installations and ESC-50 sirens of 10 recordings; raw uploads of 4 of those installations and
    6 new ones, UrbanSound8K sirens of 3 of those recordings and 7 new ones."""
    cries = [_record(i, "donateacry", "hungry", "hunger", f"i{i}") for i in range(10)]
    cries += [_record(10 + i, "esc50", "siren", "not_cry", f"{100 + i}") for i in range(10)]
    more = [_record(20 + i, "donateacry_raw", "Speech", "not_cry", f"i{i}") for i in range(6, 16)]
    more += [_record(30 + i, "us8k", "siren", "not_cry", f"{100 + i}") for i in range(7, 17)]
    return cries, more


def _sides_of(splits: dict[str, list[Record]]) -> dict[str, str]:
    return {r.split_key: side for side in SIDES for r in splits[side]}


def test_a_shared_group_takes_its_side_and_the_cries_split_does_not_move():
    cries, more = _hand_collections()
    alone, both = _sides_of(detector_split(cries, seed=2)), _sides_of(detector_split(cries, seed=2, more=more))
    assert {k: both[k] for k in alone} == alone
    new = [k for k in both if k not in alone]
    assert len(new) == 6 + 7 and {both[k] for k in new} == set(SIDES)


def test_a_group_planted_on_both_sides_across_collections_raises_leakage():
    cries, more = _hand_collections()
    splits = detector_split(cries, seed=0, more=more)
    esc50 = next(r for r in splits["train"] if r.source == "esc50")
    planted = _record(99, "us8k", "siren", "not_cry", esc50.group)  # the same Freesound recording, another clip
    splits["test"] = [*splits["test"], planted]
    with pytest.raises(LeakageError, match=f"{esc50.key}.*{planted.key}"):
        check_detector_split(splits)


def test_the_real_split_keeps_the_shipped_detector_s_sides_and_no_group_straddles(cries, more):
    from monitor.config import DetectorSettings
    from monitor.detect import DetectorModel

    shipped = DetectorModel.load(DetectorSettings().model_path()).metadata["training"]["split_groups"]
    splits = detector_split(cries, seed=0, more=more)
    own = set(cries)
    for side in SIDES:
        assert sorted({r.key for r in splits[side] if r in own}) == shipped[side]  # v1's sides, unmoved
    keys = {side: {r.split_key for r in splits[side]} for side in SIDES}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    side_of = _sides_of(splits)
    shared = {r.split_key for r in more} & {r.split_key for r in cries}
    # Installations with cleaned cries (107, 100 once unknowns are out) and Freesound recordings with ESC-50 clips
    assert Counter(k.split("/")[0] for k in shared) == {"donateacry": 100, "freesound": 7}
    for side in SIDES:
        assert {r.source for r in splits[side] if r not in own} == {"donateacry_raw", "deeply", "us8k"}
    new = {r.split_key for r in more} - shared
    share = Counter(side_of[k] for k in new)
    assert 0.5 < share["train"] / len(new) < 0.7 and 0.15 < share["test"] / len(new) < 0.25


def test_head_folds_on_the_cries_collection_are_unchanged_by_the_group_namespace(cries):
    from sklearn.model_selection import StratifiedGroupKFold

    from train.splits import strata

    by_key = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0).split(
        np.zeros(len(cries)), strata(cries), np.array([r.key for r in cries]))
    for fold, (_, test) in zip(grouped_folds(cries, 5, seed=0), by_key):
        np.testing.assert_array_equal(fold.test, np.sort(test))


# ---------------------------------------------------------------------------------------------
# Synthesised confusers


def _strongest_hz(x: np.ndarray) -> float:
    spectrum, freqs = np.abs(np.fft.rfft(x)), np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float(freqs[np.argmax(np.where(freqs >= 20, spectrum, 0))])


@pytest.mark.parametrize("kind", HARD_KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_each_confuser_is_peak_normalised_deterministic_and_at_its_pitch(kind, seed):
    x = nicu_sound(kind, np.random.default_rng(seed), 12.0)
    assert x.dtype == np.float32 and len(x) == 12 * SAMPLE_RATE and np.isfinite(x).all()
    assert np.max(np.abs(x)) == pytest.approx(1.0, abs=1e-6) and np.sqrt(np.mean(x**2)) > 1e-2
    np.testing.assert_array_equal(x, nicu_sound(kind, np.random.default_rng(seed), 12.0))
    lo, hi = BUZZ_BAND_HZ if kind == "machine_buzz" else BEEP_BAND_HZ
    assert lo <= _strongest_hz(x) <= hi  # harmonics stay under the fundamental


def test_the_pulse_oximeter_beeps_once_per_heartbeat():
    x = nicu_sound("pulse_oximeter", np.random.default_rng(3), 30.0)
    hop = SAMPLE_RATE // 200
    on = np.sqrt(np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1)) > 0.05
    beats = np.count_nonzero(np.diff(on.astype(int)) == 1)
    assert 30 - 2 <= beats <= 90 + 2  # 60-180 bpm over 30 s


def _silent_records(folder: Path, source: str, labels: list[str]) -> list[Record]:
    records = []
    for i, label in enumerate(labels):
        path = folder / f"{source}{i}.flac"
        t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
        soundfile.write(path, (0.1 * np.sin(2 * np.pi * (300 + 50 * i) * t)).astype(np.float32), SAMPLE_RATE)
        records.append(Record(path, path.name, source, label, "not_cry", str(i)))
    return records


def test_backgrounds_change_only_when_extras_are_asked_for(tmp_path):
    negatives = _silent_records(tmp_path, "esc50", ["dog", "rain", "cat"])
    extra = _silent_records(tmp_path, "deeply", ["adult_crying", "adult_screaming"])
    plain, unused = BackgroundMaker(negatives), BackgroundMaker(negatives, extra_negatives=[], extra_kinds=())
    hard = BackgroundMaker(negatives, extra_negatives=extra, extra_kinds=HARD_KINDS)
    seen: set[str] = set()
    for i in range(12):
        a, b, c = (maker.make(np.random.default_rng([7, i]), 20.0) for maker in (plain, unused, hard))
        np.testing.assert_array_equal(a[0], b[0])  # nothing drawn without extras: today's backgrounds exactly
        assert a[1] == b[1] and set(a[1]) <= set(c[1])
        seen |= set(c[1]) - set(a[1])
    assert seen >= {"deeply:adult_crying", "deeply:adult_screaming"} and len(seen & set(HARD_KINDS)) >= 4, seen


# ---------------------------------------------------------------------------------------------
# The --hard benchmark


def test_hard_mixtures_name_the_new_classes_and_keep_cries_to_the_cries_test_groups(cries, more, tmp_path):
    out = tmp_path / "hard"
    assert main(["mixtures", "--data", str(CRIES / "index.csv"), "--out", str(out), "--count", "4", "--hard"]) == 0
    with (out / "mixtures.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    classes = {c for row in rows for c in row["backgrounds"].split(";")}
    assert {c.split(":")[0] for c in classes if ":" in c} >= {"us8k", "deeply"} and classes & set(HARD_KINDS), classes
    test_groups = {r.key for r in detector_split(cries, seed=0)["test"]}
    assert {row["cry_group"] for row in rows if row["cry"] == "1"} <= test_groups
    meta = json.loads((out / "meta.json").read_text())
    assert meta["extra_kinds"] == list(HARD_KINDS) and meta["more_negatives"] > 0
    more_test = {r.key for r in detector_split(cries, seed=0, more=more)["test"] if r.source in ("us8k", "deeply")}
    assert more_test <= set(meta["split_groups"])


def test_more_without_hard_is_a_user_error(cries_index, tmp_path, capsys):
    assert main(["mixtures", "--data", str(CRIES / "index.csv"), "--out", str(tmp_path / "m"), "--count", "2",
                 "--more", str(MORE / "index.csv")]) == 2
    assert "--hard" in capsys.readouterr().err
    assert main(["mixtures", "--data", str(CRIES / "index.csv"), "--out", str(tmp_path / "m"), "--count", "2", "--hard",
                 "--more", str(tmp_path / "none.csv")]) == 2
    assert not (tmp_path / "m").exists()


def test_detector_more_without_hard_backgrounds_is_a_user_error(tmp_path, capsys):
    assert main(["detector", "--data", str(tmp_path / "index.csv"), "--out", str(tmp_path / "d"),
                 "--more", str(tmp_path / "more.csv")]) == 2
    assert "--hard-backgrounds" in capsys.readouterr().err
