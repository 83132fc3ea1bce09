"""Crying spells of real infants the shipped models never learned from (the detector's test infants), through the
monitor's batch driver: a long bath spell raises the crying alarm and no pain alarm, a vaccination spell raises the
pain alarm, and `crywatch analyze --json` lists each alarm with its time."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from monitor.analyze import analyze_samples
from monitor.audio import load_audio
from monitor.messages import SAMPLE_RATE
from tests.conftest import cry_path, run_crywatch
from train.detector.mixing import event_bounds, room_noise


def _spell(rows: list[dict[str, str]], seconds: float, seed: int = 0) -> np.ndarray:
    """The clips' crying (each trimmed to its active part) cycled with 0.3-1.5 s breathing gaps for `seconds`,
    10 s of a quiet room before and after."""
    rng = np.random.default_rng(seed)
    clips = []
    for row in rows:
        samples = load_audio(cry_path(row))
        bounds = event_bounds(samples)
        if bounds is not None:
            clips.append(samples[bounds[0]: bounds[1]] / max(1e-6, float(np.max(np.abs(samples)))) * 0.3)
    parts, length = [np.zeros(10 * SAMPLE_RATE, np.float32)], 0
    while length < seconds * SAMPLE_RATE:
        for i in rng.permutation(len(clips)):
            gap = np.zeros(int(rng.uniform(0.3, 1.5) * SAMPLE_RATE), np.float32)
            parts += [clips[i].astype(np.float32), gap]
            length += len(clips[i]) + len(gap)
    parts.append(np.zeros(10 * SAMPLE_RATE, np.float32))
    spell = np.concatenate(parts)
    floor = room_noise(np.random.default_rng(seed), len(spell) / SAMPLE_RATE) * 10 ** (-55 / 20)
    return (spell + floor[: len(spell)]).astype(np.float32)


def _test_infants(held_out: list[dict[str, str]]) -> dict[str, dict[str, list[dict[str, str]]]]:
    infants: dict[str, dict[str, list[dict[str, str]]]] = {}
    for row in held_out:
        if row["source"] == "corvin":
            infants.setdefault(row["group"], {}).setdefault(row["label"], []).append(row)
    return infants


@pytest.fixture(scope="module")
def infants(held_out) -> dict[str, dict[str, list[dict[str, str]]]]:
    found = _test_infants(held_out)
    assert len(found) == 3 and all({"pain", "discomfort"} <= set(kinds) for kinds in found.values()), found.keys()
    return found


def _alarms(samples: np.ndarray, settings, models) -> tuple[list[dict], list[tuple[str, float]]]:
    episodes = analyze_samples(samples, settings, models)[1]["episodes"]
    return episodes, [(a["kind"], a["raised_s"]) for e in episodes for a in e["alarms"]]


@pytest.mark.slow
def test_a_three_minute_bath_spell_raises_the_crying_alarm_and_no_pain_alarm(infants, settings, models):
    """Every extra window used to be another chance of a pain alarm: a long discomfort spell ended as pain."""
    for infant, kinds in infants.items():
        episodes, alarms = _alarms(_spell(kinds["discomfort"], 180.0), settings, models)
        kinds_raised = [kind for kind, _ in alarms]
        assert "pain" not in kinds_raised, (infant, alarms)
        assert kinds_raised.count("crying") == 1, (infant, alarms)  # once per spell, however long
        spell = max(episodes, key=lambda e: e["crying_s"])
        [(_, raised)] = [a for a in alarms if a[0] == "crying"]
        # Raised once 30 s of crying had been heard: after the spell's start + 30 s, before its end.
        assert spell["crying_s"] >= 150 and spell["start_s"] + settings.alerts.crying_s <= raised <= spell["end_s"], \
            (infant, spell, raised)


@pytest.mark.slow
def test_a_vaccination_spell_raises_the_pain_alarm_within_20_s(infants, settings, models):
    for infant, kinds in infants.items():
        episodes, alarms = _alarms(_spell(kinds["pain"], 60.0), settings, models)
        pain = [t for kind, t in alarms if kind == "pain"]
        assert len(pain) == 1 and pain[0] - episodes[0]["start_s"] <= 20.0, (infant, alarms)
        assert episodes[0]["label"] == "pain"


def test_analyze_json_lists_every_alarm_of_a_spell_with_its_time(infants, tmp_path):
    infant = sorted(infants)[0]
    path = tmp_path / "spell.wav"
    soundfile.write(path, _spell(infants[infant]["pain"], 40.0), SAMPLE_RATE)
    result = run_crywatch("analyze", str(path), "--json")
    assert result.returncode == 0, result.stderr
    [recording] = json.loads(result.stdout)
    alarms = [a for e in recording["episodes"] for a in e["alarms"]]
    assert {a["kind"] for a in alarms} >= {"crying", "pain"}
    for episode in recording["episodes"]:
        for alarm in episode["alarms"]:
            assert episode["start_s"] <= alarm["raised_s"] <= episode["end_s"] + 1, episode
        assert episode["crying_s"] <= episode["end_s"] - episode["start_s"] + 0.1 and episode["bouts"] >= 1
