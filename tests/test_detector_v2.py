"""Detector v2 (models/cry-detector-v2, the CRNN fused with YAMNet) on the cases a user meets first, with
recordings outside its training and tuning groups: clean cries open an episode, a cry at -6 dB in a
mixture is found, and alarms, monitor beeps, dogs, horns and sirens do not open one."""
import csv

import numpy as np
import pytest

from monitor.analyze import analyze_samples
from monitor.audio import load_audio
from monitor.config import PROJECT_ROOT
from monitor.messages import SAMPLE_RATE
from monitor.pipeline import Models
from tests.conftest import CRIES, SHARED
from train.datasets import read_dataset
from train.detector.benchmark import evaluate_clean_cries
from train.detector.mixing import BackgroundMaker, db_gain, event_bounds, mix_at_ebr, nicu_sound, room_noise
from train.labels import load_label_map

MORE = SHARED / "data" / "more"
V2 = PROJECT_ROOT / "models" / "cry-detector-v2"
V3_HEAD = PROJECT_ROOT / "models" / "acoustic-v3"  # the type head trained on v2's windows


@pytest.fixture(scope="module")
def v2_settings(settings):
    return settings.with_overrides(detector={"model": str(V2)}, classifier={"head": str(V3_HEAD)})


@pytest.fixture(scope="module")
def v2_models(v2_settings) -> Models:
    return Models.load(v2_settings)


@pytest.fixture(scope="module")
def test_records(held_out):
    """The cries collection's records of the detector's test groups."""
    keys = {f"{r['source']}/{r['group']}" for r in held_out}
    return [r for r in read_dataset(CRIES / "index.csv", load_label_map("crywatch")) if r.key in keys]


@pytest.fixture(scope="module")
def more_test_rows() -> list[dict[str, str]]:
    """Second-collection clips of the detector's test groups (no cry among them: adult, urban, phone sounds)."""
    if not (MORE / "index.csv").is_file():
        pytest.skip(f"needs the second collection in {MORE} (CryWatch development machines and CI only)")
    from train.detector.mixing import detector_split

    cries = read_dataset(CRIES / "index.csv", load_label_map("crywatch"))
    more = read_dataset(MORE / "index.csv", load_label_map("crywatch"))
    test = {r.rel for r in detector_split(cries, 0, more)["test"] if r.source in ("deeply", "us8k", "donateacry_raw")}
    with open(MORE / "index.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["path"] in test]


def _quiet_room(seconds: float, seed: int) -> np.ndarray:
    return (room_noise(np.random.default_rng(seed), seconds) * db_gain(-50)).astype(np.float32)


def _alone(clip: np.ndarray, seed: int) -> np.ndarray:
    """A clip at -25 dBFS over a quiet room floor, 1 s of room before and after."""
    scene = _quiet_room(len(clip) / SAMPLE_RATE + 2.0, seed)
    rms = float(np.sqrt(np.mean(np.square(clip, dtype=np.float64)) + 1e-20))
    scene[SAMPLE_RATE: SAMPLE_RATE + len(clip)] += clip * (db_gain(-25) / rms)
    return scene


def test_every_clean_test_group_cry_opens_an_episode_within_1_s_and_pain_cries_alone_alert(test_records, v2_settings,
                                                                                            v2_models):
    """Issue 16 asks for 99 %; v2 opens 126 of these 130 (v1 117). Each of the 4 it misses is a phone upload YAMNet
    hears as speech, music or a howl rather than crying: every cry YAMNet does not hear as something else opens one.
    A cry alone is a short spell: acoustic-v3's pain evidence (neither it nor v2 learned from these infants) needs 8
    crying windows, which a 5-7 s vaccination cry seldom gives, so only 2 of these 12 alarm as pain (issue 24: >= 80 %,
    not met; a vaccination spell does: test_spells_real.py) and none of the 37 bath cries (<= 10 %): the bound on
    pain guards that level, not the target."""
    from monitor.detect.yamnet import YamnetModel

    cries = [r for r in test_records if r.target != "not_cry"]
    result = evaluate_clean_cries(cries, v2_settings, v2_models, YamnetModel.load())
    print(f"\n{result['opened']}/{result['n']} clean test-group cries open an episode by onset + 1 s; "
          f"missed: {result['missed_drowned_out']}; pain alerts {result['pain_alerts']}")
    assert result["n"] >= 100
    assert result["recall"] >= 0.95, result["missed"]
    assert set(result["missed"]) == set(result["missed_drowned_out"]), "a cry YAMNet hears as crying opened no episode"
    pain, bath = result["pain_alerts"]["pain"], result["pain_alerts"]["discomfort"]
    assert pain["n"] >= 10 and pain["rate"] >= 0.15, pain
    assert bath["n"] >= 30 and bath["rate"] <= 0.1, bath


def test_a_cry_at_minus_6_db_in_a_noisy_room_is_found(test_records, v2_settings, v2_models):
    cry_record = next(r for r in test_records if r.source == "corvin" and r.target == "pain")
    negatives = [r for r in test_records if r.target == "not_cry"]
    rng = np.random.default_rng(5)
    background, _classes = BackgroundMaker(negatives).make(rng, 30.0)
    cry = load_audio(cry_record.path)
    bounds = event_bounds(cry)
    assert bounds is not None
    mixture = mix_at_ebr(background, cry, 10 * SAMPLE_RATE, -6.0)
    onset = (10 * SAMPLE_RATE + bounds[0]) / SAMPLE_RATE
    episodes = analyze_samples(mixture, v2_settings, v2_models)[1]["episodes"]
    offset = (10 * SAMPLE_RATE + bounds[1]) / SAMPLE_RATE
    assert any(e["start_s"] <= onset + 1.0 and e["end_s"] >= onset and e["start_s"] < offset for e in episodes), \
        (onset, episodes)


@pytest.mark.parametrize("kind", ["alarm_high", "beep_triple", "pulse_oximeter"])
def test_alarm_melodies_and_monitor_beeps_open_no_episode(kind, v2_settings, v2_models):
    samples = _quiet_room(30.0, 7) + db_gain(-15) * nicu_sound(kind, np.random.default_rng(7), 30.0)
    assert analyze_samples(samples.astype(np.float32), v2_settings, v2_models)[1]["episodes"] == []


# Not yet: 1 of the 3 adult-crying and 3 of the 6 parents'-speech test clips open an episode (docs/detector.md).
@pytest.mark.parametrize("label", ["dog_bark", "car_horn", "siren"])
def test_dog_barks_horns_and_sirens_open_no_episode(label, more_test_rows, v2_settings, v2_models):
    rows = [r for r in more_test_rows if r["label"] == label and r["cry"] == "0"][:6]
    if not rows:
        pytest.skip(f"no {label} clip in the detector's test groups")
    opened = [r["path"] for i, r in enumerate(rows)
              if analyze_samples(_alone(load_audio(MORE / r["path"]), i), v2_settings, v2_models)[1]["episodes"]]
    assert opened == [], f"{len(opened)} of {len(rows)} {label} clips opened an episode"
