"""The night benchmark (train/detector/night.py): its scoring on hand-written runs, and a tiny night built from ../shared."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from monitor.audio import load_audio
from monitor.messages import SAMPLE_RATE
from tests.conftest import CRIES, SHARED
from train.datasets import Record, read_dataset
from train.detector.mixing import FRAME_HOP, SIDES, ClipCache, cry_frames, detector_split, event_bounds
from train.detector.night import (
    EBRS_DB,
    LONG_GAP_S,
    MIN_BOUT_S,
    SHORT_GAP_S,
    alarms_of,
    describe_night,
    night_maker,
    night_sources,
    plan_spells,
    render_stream,
    score_stream,
    summarise_night,
    write_night,
)
from train.labels import load_label_map

MORE = SHARED / "data" / "more"

# ---------------------------------------------------------------------------------------------
# Scoring, on hand-written rows, episodes and alarms: no data needed

BOUTS = [[100.0, 110.0], [111.0, 130.0], [131.0, 160.0]]  # 58 s of bouts


def _spell(kind: str = "pain", bouts: list[list[float]] = BOUTS, ebr: str = "6") -> dict[str, str]:
    return {"filename": "night000.flac", "kind": kind, "group": "corvin/XYZ", "ebr_db": ebr,
            "spell_onset_s": str(bouts[0][0]), "spell_offset_s": str(bouts[-1][1]), "bouts": json.dumps(bouts),
            "cry_paths": "", "backgrounds": ""}


CRY_FREE = {"filename": "night001.flac", "kind": "none", "group": "", "ebr_db": "", "spell_onset_s": "",
            "spell_offset_s": "", "bouts": "[]", "cry_paths": "", "backgrounds": ""}


def _episode(start: float, end: float, detected: float, **extra: float) -> dict[str, float]:
    return {"start_s": start, "end_s": end, "detected_s": detected, "crying_s": end - start, **extra}


def test_a_spell_published_at_onset_plus_2_s_shows_crying_within_5_s():
    scored = score_stream(_spell(), [_episode(100.3, 165.0, 102.0)], [], 600.0)
    assert scored["shown_within"] and scored["shown_delay_s"] == pytest.approx(2.0)
    assert scored["coverage"] == pytest.approx(57.7 / 58, abs=1e-4) and scored["spell_episodes"] == 1
    assert scored["false_alarms"] == [] and scored["false_episodes"] == 0


def test_a_spell_published_at_onset_plus_7_s_is_late():
    scored = score_stream(_spell(), [_episode(100.2, 165.0, 107.0)], [], 600.0)
    assert not scored["shown_within"] and scored["shown_delay_s"] == pytest.approx(7.0)


def test_an_episode_already_open_at_onset_shows_the_spell_at_once_and_one_that_ended_before_does_not():
    open_before = score_stream(_spell(), [_episode(90.0, 104.0, 90.5)], [], 600.0)
    assert open_before["shown_within"] and open_before["shown_delay_s"] == 0.0
    ended_before = score_stream(_spell(), [_episode(90.0, 99.0, 90.5)], [], 600.0)
    assert not ended_before["shown_within"] and ended_before["shown_delay_s"] is None
    assert ended_before["false_episodes"] == 1 and ended_before["coverage"] == 0.0


def test_a_split_spell_s_coverage_and_episode_count():
    bouts = [[100.0, 110.0], [112.0, 120.0]]
    scored = score_stream(_spell(bouts=bouts), [_episode(100.0, 105.0, 100.5), _episode(112.0, 120.0, 112.4)], [],
                          600.0)
    assert scored["coverage"] == pytest.approx(13 / 18, abs=1e-4) and scored["spell_episodes"] == 2
    figures = summarise_night([scored])["spells"]["all"]
    assert figures["episodes_per_spell"] == {"max": 2, "mean": 2.0}
    assert figures["coverage"]["mean"] == pytest.approx(13 / 18, abs=1e-4)


def test_a_pain_alarm_on_a_bath_spell_counts_against_the_bath_target():
    bath = score_stream(_spell("bath"), [_episode(100.0, 165.0, 100.5)], [("pain", 112.0)], 600.0)
    pain = score_stream(_spell("pain"), [_episode(100.0, 165.0, 100.5)], [("pain", 125.0)], 600.0)
    assert bath["alarms"] == [["pain", 112.0, 12.0]] and bath["false_alarms"] == []
    result = summarise_night([bath, pain])
    assert result["spells"]["bath"]["alarm_share"]["pain"] == 1.0
    assert result["spells"]["pain"]["alarm_share"]["pain"] == 1.0
    assert result["spells"]["pain"]["pain_within"] == 0.0  # 25 s after the first bout: later than 20 s
    assert result["spells"]["pain"]["alarm_delay_s"]["pain"]["median"] == 25.0
    targets = {t["target"]: t for t in result["targets"]}
    assert targets["bath spells raising the pain alarm"]["met"] is False
    assert targets["pain spells raising the pain alarm"]["met"] is True
    assert targets["pain spells with a pain alarm within 20 s"]["met"] is False


def test_alarms_before_a_spell_or_well_after_it_are_false():
    scored = score_stream(_spell(), [], [("pain", 50.0), ("pain", 169.0), ("pain", 171.0)], 600.0)
    assert [a[1] for a in scored["alarms"]] == [169.0]  # until the last bout's end + 10 s
    assert scored["false_alarms"] == [["pain", 50.0], ["pain", 171.0]]
    assert summarise_night([scored])["false_alarms_in_spell_streams"] == 2


def test_a_false_alarm_in_a_cry_free_stream_per_hour_and_logged_crying():
    scored = score_stream(CRY_FREE, [_episode(50.0, 58.0, 50.5, crying_s=8.0)], [("pain", 55.0)], 600.0)
    free = summarise_night([scored])["cry_free"]
    assert free["hours"] == pytest.approx(1 / 6, abs=1e-3)
    assert free["false_alarms_per_hour"] == pytest.approx(6.0) and free["false_alarms_per_hour_by_kind"]["pain"] == 6.0
    assert free["false_episodes_per_hour"] == pytest.approx(6.0)
    assert free["crying_min_per_hour"] == pytest.approx(8 / 60 * 6, abs=1e-3)


def test_alarms_are_read_from_the_spells_as_analyze_lists_them():
    summary = {"episodes": [
        {"alarms": [{"kind": "crying", "raised_s": 40.0}, {"kind": "pain", "raised_s": 12.0},
                    {"kind": "crying", "raised_s": 310.0, "priority": "high"}]},
        {"alarms": [{"kind": "pain", "raised_s": 30.5}]}]}
    assert alarms_of(summary) == [("pain", 12.0), ("pain", 30.5), ("crying", 40.0), ("crying_high", 310.0)]


def test_the_table_names_every_figure_and_target():
    streams = [score_stream(_spell(), [_episode(100.3, 165.0, 102.0)], [("pain", 110.0)], 600.0),
               score_stream(CRY_FREE, [], [], 600.0)]
    result = {"night": "x", "detector": "d", "head": "h", "embedder": "e", "per_stream": streams,
              "timing": {"audio_s": 1200.0, "monitor_s": 4.0, "x_real_time": 300.0}, **summarise_night(streams)}
    table = describe_night(result)
    for text in ("shown<=5s", "coverage", "pain alarm", "+6 dB", "pain +6 dB", "false alarms per cry-free hour",
                 "logged crying", "raises no crying alarm", "MISSED", "300x real time"):
        assert text in table, text
    json.dumps(result)


# ---------------------------------------------------------------------------------------------
# A tiny night from ../shared: 60 s streams with 20-30 s spells

TINY = {"streams_per_kind": 1, "kinds": ("pain", "esc50"), "stream_s": 60.0, "spell_s": (20.0, 30.0),
        "clear_s": (5.0, 10.0)}
SEED = 3


@pytest.fixture(scope="module")
def collections(cries_index) -> tuple[list[Record], list[Record]]:
    if not (MORE / "index.csv").is_file():
        pytest.skip(f"needs the second collection in {MORE} (present on CryWatch development machines and CI only)")
    label_map = load_label_map()
    return read_dataset(CRIES / "index.csv", label_map), read_dataset(MORE / "index.csv", label_map)


@pytest.fixture(scope="module")
def tiny(collections, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("night") / "a"
    write_night(*collections, out, seed=SEED, command="test", **TINY)
    return out


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "night.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_tiny_night_uses_only_test_groups(tiny, collections):
    records, more = collections
    sides = detector_split(records, 0, more)
    side_of = {r.split_key: side for side in SIDES for r in sides[side]}
    by_path = {r.rel: r for r in records}
    rows = _rows(tiny)
    assert [r["kind"] for r in rows] == ["pain", "none", "esc50", "none"]
    for row in (r for r in rows if r["kind"] != "none"):
        clips = [by_path[p] for p in row["cry_paths"].split(";")]
        assert {c.key for c in clips} == {row["group"]}  # one group's cries per spell
        assert {side_of[c.split_key] for c in clips} == {"test"}
    meta = json.loads((tiny / "meta.json").read_text())
    assert set(meta["split_groups"]) == {r.key for r in sides["test"]}
    assert meta["spells"] == {"pain": 1, "esc50": 1} and meta["cry_free"] == 2


def test_backgrounds_draw_only_non_cries_of_the_split_and_cry_free_streams_hold_no_cry(tiny, collections):
    sources = night_sources(*collections)
    test_keys = {r.key for r in detector_split(collections[0], 0, collections[1])["test"]}
    for pool in (sources.negatives, sources.extra_negatives):
        assert pool and {r.target for r in pool} == {"not_cry"} and {r.key for r in pool} <= test_keys
    assert {r.source for r in sources.extra_negatives} == {"deeply", "donateacry_raw", "us8k"}
    for row in (r for r in _rows(tiny) if r["kind"] == "none"):
        assert row["bouts"] == "[]" and row["cry_paths"] == "" and row["spell_onset_s"] == ""
        assert "crying_baby" not in row["backgrounds"].split(";")


@pytest.fixture(scope="module")
def render(collections):
    """render_stream(index, with_spell) of the tiny night, with its sources, spells and clips loaded once."""
    sources = night_sources(*collections)
    cache = ClipCache()
    spells = plan_spells(sources.cries, cache, TINY["kinds"], TINY["streams_per_kind"])
    maker = night_maker(sources, cache)

    def rendered(index: int, with_spell: bool) -> tuple[np.ndarray, dict]:
        return render_stream(index, spells[index // 2], maker, cache, SEED, TINY["stream_s"], TINY["spell_s"],
                             TINY["clear_s"], with_spell=with_spell)
    return rendered


@pytest.mark.parametrize("index", [0, 2])
def test_a_spell_lies_in_its_bouts_at_its_ebr_and_the_file_is_the_rendered_stream(tiny, render, index):
    row = _rows(tiny)[index]
    mixture, rendered = render(index, True)
    background, same = render(index, False)
    assert {k: str(v) for k, v in rendered.items()} == row == {k: str(v) for k, v in same.items()}
    spell = mixture.astype(np.float64) - background
    bouts = json.loads(row["bouts"])
    inside = np.zeros(len(spell), bool)
    cry, floor = [], []
    for (onset, offset), path in zip(bouts, row["cry_paths"].split(";")):
        first, last = round(onset * SAMPLE_RATE), round(offset * SAMPLE_RATE)
        inside[first:last] = True
        assert np.sqrt(np.mean(spell[first:last] ** 2)) > 1e-3
        clip = load_audio(CRIES / path)  # each bout's cry frames are its clip's own, from the clip's active part on
        start = event_bounds(clip)[0] // FRAME_HOP
        mask = cry_frames(clip)[start: start + (last - first) // FRAME_HOP]
        cry.append(spell[first:last].reshape(-1, FRAME_HOP)[mask])
        floor.append(background[first:last].reshape(-1, FRAME_HOP)[mask].astype(np.float64))
    assert not spell[~inside].any()  # nothing of the spell outside its bouts, not even in the breathing gaps
    ebr = 10 * np.log10(np.mean(np.concatenate(cry) ** 2) / np.mean(np.concatenate(floor) ** 2))
    assert ebr == pytest.approx(float(row["ebr_db"]), abs=0.5)
    assert float(row["ebr_db"]) in EBRS_DB
    gaps = np.diff(np.array(bouts).ravel())[1::2]
    assert np.all(gaps >= SHORT_GAP_S[0] - 0.02) and np.all(gaps <= LONG_GAP_S[1] + 0.02)
    # a spell ends with its last whole bout when the next would not fit: up to a gap and MIN_BOUT_S short
    assert TINY["spell_s"][0] - MIN_BOUT_S - LONG_GAP_S[1] <= bouts[-1][1] - bouts[0][0] <= TINY["spell_s"][1]
    assert bouts[0][0] >= TINY["clear_s"][0] and bouts[-1][1] <= TINY["stream_s"] - TINY["clear_s"][1]
    written = load_audio(tiny / row["filename"])
    gain = min(1.0, 0.99 / float(np.max(np.abs(mixture))))
    np.testing.assert_allclose(written, mixture * gain, atol=1e-4)


def test_the_night_is_deterministic(tiny, collections, tmp_path):
    again = tmp_path / "b"
    write_night(*collections, again, seed=SEED, command="test", **TINY)
    assert (again / "night.csv").read_text() == (tiny / "night.csv").read_text()
    for row in _rows(tiny):
        assert np.array_equal(load_audio(again / row["filename"]), load_audio(tiny / row["filename"]))


def test_the_test_side_s_spells_cover_each_infant_at_each_ebr(collections):
    sources = night_sources(*collections)
    spells = plan_spells(sources.cries, ClipCache(), ("pain", "bath", "esc50"))
    for kind in ("pain", "bath"):
        chosen = [(s.group, s.ebr_db) for s in spells if s.kind == kind]
        infants = {g for g, _ in chosen}
        assert len(infants) == 3 and sorted(chosen) == sorted((g, e) for g in infants for e in EBRS_DB)
        # the first three of a kind are three infants at three EBRs (what --streams-per-kind 3 keeps)
        assert len({g for g, _ in chosen[:3]}) == 3 and {e for _, e in chosen[:3]} == set(EBRS_DB)
    assert len([s for s in spells if s.kind == "esc50"]) == 3
    assert all(r.target != "not_cry" for s in spells for r in s.clips)


def test_a_spell_that_cannot_fit_its_stream_is_a_user_error(tmp_path):
    from train.datasets import DataError

    with pytest.raises(DataError, match="does not fit a 60 s stream"):
        write_night([], [], tmp_path, stream_s=60.0, spell_s=(20.0, 50.0), clear_s=(5.0, 10.0))
