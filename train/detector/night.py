"""The night benchmark: 10-minute bedside streams with crying spells, scored the way a nurse meets them.

`write_night` builds streams from one side of the detector's split (the test groups by default; `val` for tuning).
Half the streams hold one spell: one group's cries (one Corvin infant's vaccination cries, the same infant's bath
cries, one Donate-a-cry installation's, one ESC-50 source recording's) cycled in shuffled order with breathing gaps
for 1-3 minutes, at 0/+6/+12 dB over dense backgrounds (the everyday non-cries of both collections at 0.3 clips
per second, and synthesised NICU sounds over the whole stream or in stretches). The other half are built the same
way without a spell. `evaluate_night` runs each stream through the monitor's own batch driver and reports what the
bedside shows: whether a spell shows crying within 5 s, how much of it the episodes cover, the alarms it raises and
when, and on cry-free streams the false alarms and the crying minutes logged per hour.

Wire as `python -m train night` (add_night_arguments, cmd_night) and `python -m train evaluate-night`
(add_evaluate_night_arguments, cmd_evaluate_night).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from monitor.messages import SAMPLE_RATE
from train.datasets import DataError, Record, more_index, read_dataset
from train.detector.benchmark import _latency_summary, read_rows, write_mixture, write_rows
from train.detector.mixing import (
    FRAME_HOP,
    HARD_KINDS,
    NICU_KINDS,
    SIDES,
    BackgroundMaker,
    ClipCache,
    active_rms,
    cry_frames,
    detector_split,
    event_bounds,
    mix_at_ebr,
    nicu_level,
    nicu_sound,
)
from train.labels import CRYWATCH, load_label_map

if TYPE_CHECKING:
    from monitor.config import Settings
    from monitor.pipeline import Models

# ---------------------------------------------------------------------------------------------
# Construction

STREAM_S = 600.0
SPELL_S = (60.0, 180.0)  # a spell's length, uniform
CLEAR_S = (10.0, 60.0)  # stream before a spell's onset (the monitor has heard the room) and after its end (recovery)
EBRS_DB = (0, 6, 12)
SPELL_KINDS = ("pain", "bath", "phone", "esc50")
CORVIN_LABELS = {"pain": "pain", "bath": "discomfort"}  # Corvin's vaccination and bath cries
PHONE_SOURCE = "donateacry"  # the cleaned set in the cries collection: cries by label, not by a model's guess
ESC50_CRY = "crying_baby"
PHONE_MIN_CLIPS = 3  # an installation with fewer audible clips would repeat one or two clips for minutes
PHONE_MAX = 9  # installations per night (the test side has 6 with enough clips, the validation side 9)
# Between bouts an infant inhales: mostly a short catch of breath, sometimes a longer pause. Each clip keeps its
# own internal pauses, so these are the gaps between recordings only.
P_SHORT_GAP = 0.8
SHORT_GAP_S = (0.3, 1.0)
LONG_GAP_S = (1.0, 3.0)
MIN_BOUT_S = 1.0  # a spell's last clip is cut at the spell's end, unless less than this would be left
# Dense backgrounds: 0.15 everyday clips of the cries collection (ESC-50 non-cries, FSDD speech) and 0.15 of the
# second collection (adult vocalisations incl. adult crying, urban sounds, the phones' speech and TV) per second:
# 0.3 in all, against the 30 s benchmark's 0.12 (+ 0.08 with --hard).
CLIPS_PER_S = 0.15
EXTRA_CLIPS_PER_S = 0.15
# Besides the sounds BackgroundMaker lays over the whole stream (an alarm 40 %, cpap/fan/pump/knock 25 % each,
# each hard kind 15 %), each synthesised kind sounds in stretches with this probability: an alarm that is
# silenced, a pump that runs for a while.
P_STRETCH = 0.2
STRETCHES = (1, 3)
STRETCH_S = (10.0, 120.0)
FADE_S = 0.05  # a stretch starts and stops without a click
COLUMNS = ("filename", "kind", "group", "ebr_db", "spell_onset_s", "spell_offset_s", "bouts", "cry_paths", "backgrounds")


@dataclass(frozen=True)
class Spell:
    """One spell to build: its kind, group (Record.key), EBR and the group's audible cry clips."""

    kind: str
    group: str
    ebr_db: int
    clips: tuple[Record, ...]


@dataclass(frozen=True)
class Sources:
    """A split side's clips: cries (cries collection only) and the two collections' non-cries."""

    split_groups: frozenset[str]
    cries: list[Record]
    negatives: list[Record]
    extra_negatives: list[Record]


def night_sources(records: list[Record], more: list[Record], split: str = "test", split_seed: int = 0) -> Sources:
    """The `split` side of the detector's split of both collections. Cries come from `records` only: the second
    collection's cries are a model's weak labels."""
    if split not in SIDES:
        raise DataError(f"split {split!r}: use one of {', '.join(SIDES)}")
    chosen = detector_split(records, split_seed, more)[split]
    extra = set(more)
    return Sources(frozenset(r.key for r in chosen),
                   [r for r in chosen if r.target != "not_cry" and r not in extra],
                   [r for r in chosen if r.target == "not_cry" and r not in extra],
                   [r for r in chosen if r.target == "not_cry" and r in extra])


def _is_spell_clip(kind: str, record: Record) -> bool:
    if kind in CORVIN_LABELS:
        return record.source == "corvin" and record.label == CORVIN_LABELS[kind]
    if kind == "phone":
        return record.source == PHONE_SOURCE
    return record.source == "esc50" and record.label == ESC50_CRY


def _audible_by_group(cries: list[Record], cache: ClipCache) -> dict[str, list[Record]]:
    """Clips with crying by event_bounds (the reference's own rule), grouped by Record.key."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in cries:
        if event_bounds(cache(record)) is not None:
            groups[record.key].append(record)
    return dict(sorted(groups.items()))


def plan_spells(cries: list[Record], cache: ClipCache, kinds: Sequence[str] = SPELL_KINDS,
                streams_per_kind: int | None = None, phone_max: int = PHONE_MAX) -> list[Spell]:
    """The spells of a night, by kind in SPELL_KINDS order.

    pain, bath: each Corvin infant at each EBR, in rounds where infant i takes EBR (i + round) % 3, so that the
    first n of a kind (`streams_per_kind`) spread over infants and EBRs. phone: up to `phone_max` installations
    with at least PHONE_MIN_CLIPS audible clips, most clips first; esc50: every crying_baby source recording;
    both at cycling EBRs.
    """
    unknown = sorted(set(kinds) - set(SPELL_KINDS))
    if unknown:
        raise DataError(f"spell kind(s) {', '.join(unknown)}: use {', '.join(SPELL_KINDS)}")
    spells: list[Spell] = []
    for kind in (k for k in SPELL_KINDS if k in kinds):
        groups = list(_audible_by_group([r for r in cries if _is_spell_clip(kind, r)], cache).items())
        if kind in CORVIN_LABELS:
            planned = [Spell(kind, key, EBRS_DB[(i + rnd) % len(EBRS_DB)], tuple(clips))
                       for rnd in range(len(EBRS_DB)) for i, (key, clips) in enumerate(groups)]
        else:
            if kind == "phone":
                groups = sorted((g for g in groups if len(g[1]) >= PHONE_MIN_CLIPS), key=lambda g: (-len(g[1]), g[0]))
                groups = groups[:phone_max]
            planned = [Spell(kind, key, EBRS_DB[i % len(EBRS_DB)], tuple(clips)) for i, (key, clips) in enumerate(groups)]
        spells += planned[:streams_per_kind]
    return spells


def night_background(maker: BackgroundMaker, rng: np.random.Generator, stream_s: float) -> tuple[np.ndarray, list[str]]:
    """BackgroundMaker's stream (floor, clips, whole-stream NICU sounds) plus synthesised kinds in stretches."""
    out, classes = maker.make(rng, stream_s)
    fade = int(FADE_S * SAMPLE_RATE)
    for kind in NICU_KINDS + HARD_KINDS:
        if rng.random() >= P_STRETCH:
            continue
        classes.append(kind)
        for _ in range(int(rng.integers(STRETCHES[0], STRETCHES[1] + 1))):
            length = min(rng.uniform(*STRETCH_S), stream_s)
            sound = nicu_sound(kind, rng, length) * nicu_level(kind, rng)
            edge = np.linspace(0.0, 1.0, min(fade, len(sound) // 2))
            sound[: len(edge)] *= edge
            sound[len(sound) - len(edge):] *= edge[::-1]
            at = int(rng.uniform(0, stream_s - length) * SAMPLE_RATE)
            out[at: at + len(sound)] += sound
    return out, sorted(set(classes))


@dataclass(frozen=True)
class PlacedSpell:
    """A spell's samples at unit active level, starting at sample `onset`; its active frames; bouts (frames)."""

    onset: int
    samples: np.ndarray
    active: np.ndarray
    bouts: list[tuple[int, int]]
    paths: list[str]


def _clip_order(rng: np.random.Generator, count: int, last: int | None) -> list[int]:
    """A shuffled pass over the clips that does not start with the one just played."""
    order = [int(i) for i in rng.permutation(count)]
    if count > 1 and order[0] == last:
        order = order[1:] + order[:1]
    return order


def place_spell(spell: Spell, cache: ClipCache, rng: np.random.Generator, stream_s: float,
                spell_s: tuple[float, float], clear_s: tuple[float, float]) -> PlacedSpell:
    """The spell's clips, each trimmed to its active part (event_bounds) and brought to unit RMS over its active
    frames, cycled in shuffled passes with breathing gaps from a random onset for a uniform `spell_s` length.

    Every clip at one level: the recordings' own levels come from different recorders, distances and gain settings
    (one phone installation's clips lie up to 24 dB apart), while a bedside microphone hears one infant at one
    distance. Bouts are frame-aligned, so each bout's activity is its clip's own cry_frames.
    """
    length = rng.uniform(*spell_s)
    onset = round(rng.uniform(clear_s[0], stream_s - clear_s[1] - length) * SAMPLE_RATE / FRAME_HOP)
    end = onset + round(length * SAMPLE_RATE / FRAME_HOP)
    samples, active = np.zeros((end - onset) * FRAME_HOP, np.float32), np.zeros(end - onset, bool)
    bouts: list[tuple[int, int]] = []
    paths: list[str] = []
    order: list[int] = []
    at, last = onset, None
    while at < end:
        if not order:
            order = _clip_order(rng, len(spell.clips), last)
        last = order.pop(0)
        record = spell.clips[last]
        clip = cache(record)
        first, stop = event_bounds(clip) or (0, 0)  # planned clips all have crying
        frames = min((stop - first) // FRAME_HOP, end - at)
        if bouts and frames * FRAME_HOP < MIN_BOUT_S * SAMPLE_RATE:
            break
        lo = (at - onset) * FRAME_HOP
        samples[lo: lo + frames * FRAME_HOP] = clip[first: first + frames * FRAME_HOP] / active_rms(clip)
        active[at - onset: at - onset + frames] = cry_frames(clip)[first // FRAME_HOP: first // FRAME_HOP + frames]
        bouts.append((at, at + frames))
        paths.append(record.rel)
        gap = rng.uniform(*SHORT_GAP_S) if rng.random() < P_SHORT_GAP else rng.uniform(*LONG_GAP_S)
        at += frames + round(gap * SAMPLE_RATE / FRAME_HOP)
    offset = bouts[-1][1]
    return PlacedSpell(onset * FRAME_HOP, samples[: (offset - onset) * FRAME_HOP], active[: offset - onset], bouts, paths)


def render_stream(index: int, spell: Spell | None, maker: BackgroundMaker, cache: ClipCache, seed: int,
                  stream_s: float = STREAM_S, spell_s: tuple[float, float] = SPELL_S,
                  clear_s: tuple[float, float] = CLEAR_S, with_spell: bool = True) -> tuple[np.ndarray, dict[str, Any]]:
    """Stream `index` (float32, before any anti-clipping gain) and its night.csv row. Its own generator
    ([seed, index]) draws the background first and the spell after, so `with_spell=False` gives the same stream
    and row without the spell's samples (the tests' reference)."""
    rng = np.random.default_rng([seed, index])
    mixture, classes = night_background(maker, rng, stream_s)
    row: dict[str, Any] = {"filename": f"night{index:03d}.flac", "kind": "none", "group": "", "ebr_db": "",
                           "spell_onset_s": "", "spell_offset_s": "", "bouts": "[]", "cry_paths": "",
                           "backgrounds": ";".join(classes)}
    if spell is None:
        return mixture, row
    placed = place_spell(spell, cache, rng, stream_s, spell_s, clear_s)
    if with_spell:
        # One gain for the whole spell: its active frames' energy against the background's over the same frames
        mixture = mix_at_ebr(mixture, placed.samples, placed.onset, spell.ebr_db, placed.active)
    hop_s = FRAME_HOP / SAMPLE_RATE
    row.update(kind=spell.kind, group=spell.group, ebr_db=spell.ebr_db,
               spell_onset_s=round(placed.bouts[0][0] * hop_s, 3), spell_offset_s=round(placed.bouts[-1][1] * hop_s, 3),
               bouts=json.dumps([[round(a * hop_s, 3), round(b * hop_s, 3)] for a, b in placed.bouts]),
               cry_paths=";".join(placed.paths))
    return mixture, row


def night_maker(sources: Sources, cache: ClipCache) -> BackgroundMaker:
    return BackgroundMaker(sources.negatives, cache, sources.extra_negatives, HARD_KINDS, clips_per_s=CLIPS_PER_S,
                           extra_clips_per_s=EXTRA_CLIPS_PER_S)


def write_night(records: list[Record], more: list[Record], out: Path, split: str = "test", seed: int = 0,
                streams_per_kind: int | None = None, kinds: Sequence[str] = SPELL_KINDS, phone_max: int = PHONE_MAX,
                stream_s: float = STREAM_S, spell_s: tuple[float, float] = SPELL_S,
                clear_s: tuple[float, float] = CLEAR_S, split_seed: int = 0, command: str = "") -> list[dict[str, Any]]:
    """Spell streams (plan_spells) at even indices and as many cry-free streams at odd ones, into `out`:
    nightNNN.flac (16 kHz PCM_16), night.csv (COLUMNS; `bouts` a JSON list of [onset_s, offset_s], one entry of
    `cry_paths` per bout) and meta.json."""
    if not 0 < spell_s[0] <= spell_s[1]:
        raise DataError(f"spell length {spell_s[0]:g}-{spell_s[1]:g} s: need 0 < min <= max")
    if spell_s[1] + sum(clear_s) > stream_s:
        raise DataError(f"a {spell_s[1]:g} s spell with {clear_s[0]:g} s before and {clear_s[1]:g} s after does not fit "
                        f"a {stream_s:g} s stream: shorten the spells or lengthen the stream")
    sources = night_sources(records, more, split, split_seed)
    cache = ClipCache()
    spells = plan_spells(sources.cries, cache, kinds, streams_per_kind, phone_max)
    if not spells:
        raise DataError(f"split {split!r} has no group with enough audible cries for the spell kinds {', '.join(kinds)}")
    if not sources.negatives:
        raise DataError(f"split {split!r} has no non-cry clip to build backgrounds from")
    maker = night_maker(sources, cache)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    started = time.perf_counter()
    for index in tqdm(range(2 * len(spells)), desc="night", unit="stream"):
        mixture, row = render_stream(index, spells[index // 2] if index % 2 == 0 else None, maker, cache, seed,
                                     stream_s, spell_s, clear_s)
        write_mixture(out / row["filename"], mixture)
        rows.append(row)
    write_rows(out / "night.csv", COLUMNS, rows)
    counts = {kind: sum(s.kind == kind for s in spells) for kind in SPELL_KINDS if kind in kinds}
    meta = {"seed": seed, "split": split, "split_seed": split_seed, "command": command, "stream_s": stream_s,
            "spell_s": list(spell_s), "clear_s": list(clear_s), "ebrs_db": list(EBRS_DB), "spells": counts,
            "cry_free": len(spells), "clips_per_s": CLIPS_PER_S + EXTRA_CLIPS_PER_S,
            "build_s": round(time.perf_counter() - started, 1),
            "split_groups": sorted(sources.split_groups), "spell_groups": sorted({s.group for s in spells}),
            "more_negatives": len(sources.extra_negatives)}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return rows


# ---------------------------------------------------------------------------------------------
# Scoring

SHOWN_WITHIN_S = 5.0  # a spell must show crying on the dashboard this soon after its first bout
SPELL_TAIL_S = 10.0  # alarms and episodes until the spell's end + this belong to the spell
PAIN_ALARM_WITHIN_S = 20.0


def alarms_of(summary: dict[str, Any]) -> list[tuple[str, float]]:
    """(kind, raised_s) of every alarm the spells of a recording raised, as `crywatch analyze --json` lists them;
    a crying alarm escalated to high priority counts as its own kind, crying_high."""
    return sorted(((a["kind"] + ("_high" if a.get("priority") == "high" else ""), a["raised_s"])
                   for episode in summary["episodes"] for a in episode["alarms"]), key=lambda alarm: alarm[1])


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return merged


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Seconds shared by two unions of intervals."""
    return sum(max(0.0, min(e1, e2) - max(s1, s2)) for s1, e1 in a for s2, e2 in b)


def score_stream(row: dict[str, str], episodes: list[dict[str, Any]], alarms: list[tuple[str, float]],
                 duration_s: float) -> dict[str, Any]:
    """One stream's figures from its night.csv row, the summary's episodes and alarms_of's alarms."""
    result: dict[str, Any] = {"filename": row["filename"], "kind": row["kind"], "seconds": duration_s,
                              "episodes": [[e["start_s"], e["end_s"], e["detected_s"], e["crying_s"]] for e in episodes]}
    if row["kind"] == "none":
        return result | {"false_alarms": [[k, t] for k, t in alarms], "false_episodes": len(episodes),
                         "crying_s": round(sum(float(e["crying_s"]) for e in episodes), 3)}
    onset, offset = float(row["spell_onset_s"]), float(row["spell_offset_s"])
    until = offset + SPELL_TAIL_S
    # Showing crying: an episode published (detected_s) by then and not ended before the spell began; one opened
    # before the spell and still open shows it from the first sample (delay 0).
    showing = [max(0.0, e["detected_s"] - onset) for e in episodes if e["end_s"] >= onset and e["detected_s"] <= until]
    delay = min(showing) if showing else None
    bouts = _union([(a, b) for a, b in json.loads(row["bouts"])])
    covered = _overlap(bouts, _union([(e["start_s"], e["end_s"]) for e in episodes]))
    inside = [(k, t) for k, t in alarms if onset <= t <= until]
    return result | {
        "group": row["group"], "ebr_db": row["ebr_db"], "onset_s": onset, "offset_s": offset,
        "shown_delay_s": None if delay is None else round(delay, 3),
        "shown_within": delay is not None and delay <= SHOWN_WITHIN_S,
        "coverage": round(covered / max(sum(b - a for a, b in bouts), 1e-9), 4),
        "spell_episodes": sum(e["start_s"] <= offset and e["end_s"] >= onset for e in episodes),
        "alarms": [[k, t, round(t - onset, 3)] for k, t in inside],
        "false_alarms": [[k, t] for k, t in alarms if (k, t) not in inside],
        "false_episodes": sum(e["end_s"] < onset or e["start_s"] > until for e in episodes)}


def _first_alarm_delays(stream: dict[str, Any]) -> dict[str, float]:
    """The first alarm of each kind a spell raised, as a delay from its onset."""
    first: dict[str, float] = {}
    for kind, _t, delay in stream["alarms"]:
        first.setdefault(kind, delay)
    return first


def _spell_figures(streams: list[dict[str, Any]], alarm_kinds: list[str]) -> dict[str, Any]:
    n = len(streams)
    first = [_first_alarm_delays(s) for s in streams]
    spans = [s["spell_episodes"] for s in streams]
    return {
        "n": n,
        "shown_within": sum(s["shown_within"] for s in streams) / n,
        "shown_delay_s": _latency_summary([s["shown_delay_s"] for s in streams if s["shown_delay_s"] is not None]),
        "coverage": {"mean": round(float(np.mean([s["coverage"] for s in streams])), 4),
                     "min": min(s["coverage"] for s in streams)},
        "episodes_per_spell": {"max": max(spans), "mean": round(float(np.mean(spans)), 2)},
        "alarm_share": {k: sum(k in f for f in first) / n for k in alarm_kinds},
        "alarm_delay_s": {k: _latency_summary([f[k] for f in first if k in f]) for k in alarm_kinds},
        "pain_within": sum(f.get("pain", np.inf) <= PAIN_ALARM_WITHIN_S for f in first) / n,
    }


def summarise_night(streams: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures over score_stream results: spells overall, by kind, by EBR and by both; cry-free rates per hour."""
    spells = [s for s in streams if s["kind"] != "none"]
    free = [s for s in streams if s["kind"] == "none"]
    alarm_kinds = sorted({a[0] for s in streams for a in s.get("alarms", []) + s["false_alarms"]} | {"pain"})
    result: dict[str, Any] = {"spells": {}, "alarm_kinds": alarm_kinds}
    if spells:
        ebrs = sorted({float(s["ebr_db"]) for s in spells})
        subsets: dict[str, list[dict[str, Any]]] = {"all": spells}
        subsets |= {kind: [s for s in spells if s["kind"] == kind] for kind in SPELL_KINDS}
        subsets |= {f"{e:+.0f} dB": [s for s in spells if float(s["ebr_db"]) == e] for e in ebrs}
        subsets |= {f"{kind} {e:+.0f} dB": [s for s in spells if s["kind"] == kind and float(s["ebr_db"]) == e]
                    for kind in SPELL_KINDS for e in ebrs}
        result["spells"] = {key: _spell_figures(subset, alarm_kinds) for key, subset in subsets.items() if subset}
        result["false_alarms_in_spell_streams"] = sum(len(s["false_alarms"]) for s in spells)
        result["false_episodes_in_spell_streams"] = sum(s["false_episodes"] for s in spells)
    hours = sum(s["seconds"] for s in free) / 3600
    per_hour = (lambda x: round(x / hours, 3)) if hours else (lambda x: float("nan"))
    result["cry_free"] = {
        "streams": len(free), "hours": round(hours, 3),
        "false_alarms": sum(len(s["false_alarms"]) for s in free),
        "false_alarms_per_hour": per_hour(sum(len(s["false_alarms"]) for s in free)),
        "false_alarms_per_hour_by_kind": {k: per_hour(sum(a[0] == k for s in free for a in s["false_alarms"]))
                                          for k in alarm_kinds},
        "false_episodes_per_hour": per_hour(sum(s["false_episodes"] for s in free)),
        "crying_min_per_hour": per_hour(sum(s["crying_s"] for s in free) / 60),
    }
    result["targets"] = _targets(result)
    return result


def _targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with this night's value and whether it is met (None: nothing to measure)."""
    spells, free = result["spells"], result["cry_free"]

    def alarm_share(subset: str, kind: str) -> float | None:
        return spells[subset]["alarm_share"].get(kind, 0.0) if subset in spells else None

    def cry_free(key: str) -> float | None:
        return free[key] if free["streams"] else None

    measured = [
        ("spells showing crying within 5 s", spells["all"]["shown_within"] if spells else None, 1.0, False),
        ("spells raising the crying alarm", alarm_share("all", "crying"), 1.0, False),
        ("pain spells raising the pain alarm", alarm_share("pain", "pain"), 0.8, False),
        ("bath spells raising the pain alarm", alarm_share("bath", "pain"), 0.1, True),
        (f"pain spells with a pain alarm within {PAIN_ALARM_WITHIN_S:.0f} s",
         spells["pain"]["pain_within"] if "pain" in spells else None, 1.0, False),
        ("false alarms per cry-free hour", cry_free("false_alarms_per_hour"), 0.2, True),
        ("logged crying minutes per cry-free hour", cry_free("crying_min_per_hour"), 2.0, True),
    ]
    return [{"target": name, "value": value, "limit": limit, "at_most": at_most,
             "met": None if value is None or value != value else (value <= limit if at_most else value >= limit)}
            for name, value, limit, at_most in measured]


def read_night(folder: Path) -> list[dict[str, str]]:
    return read_rows(Path(folder) / "night.csv", f"build the night first with `python -m train night --out {folder}`")


def evaluate_night(folder: Path, settings: Settings, models: Models) -> dict[str, Any]:
    """Every stream through monitor.analyze.analyze_samples, decoded block by block; summarise_night's figures,
    the models used, timing and per-stream details."""
    from monitor.analyze import analyze_samples
    from monitor.audio import stream_audio

    rows = read_night(folder)
    streams, audio_s, monitor_s = [], 0.0, 0.0
    for row in tqdm(rows, desc="evaluate night", unit="stream"):
        started = time.perf_counter()
        _events, summary = analyze_samples(stream_audio(Path(folder) / row["filename"]), settings, models)
        monitor_s += time.perf_counter() - started
        audio_s += summary["duration_s"]
        streams.append(score_stream(row, summary["episodes"], alarms_of(summary), summary["duration_s"]))
    meta_path = Path(folder) / "meta.json"
    return {"night": str(folder), "meta": json.loads(meta_path.read_text()) if meta_path.is_file() else {},
            "detector": models.detector.id, "head": models.head.name, "head_path": settings.classifier.head,
            "embedder": settings.classifier.embedder,
            "alert_classes": list(settings.alerts.classes), **summarise_night(streams),
            "timing": {"audio_s": round(audio_s, 1), "monitor_s": round(monitor_s, 1),
                       "x_real_time": round(audio_s / max(monitor_s, 1e-9), 1)},
            "per_stream": streams}


def _delays(d: dict[str, Any]) -> str:
    return f"{d['median']:5.1f} {d['p90']:5.1f} {d['max']:5.1f}" if d["n"] else f"{'-':>5} {'-':>5} {'-':>5}"


def _spell_line(key: str, s: dict[str, Any]) -> str:
    episodes = s["episodes_per_spell"]
    return (f"  {key:<14}{s['n']:>3}  {s['shown_within']:>9.0%}  {_delays(s['shown_delay_s']):>19}  "
            f"{s['coverage']['mean']:>8.0%}  {episodes['max']:>8d} / {episodes['mean']:<6.1f}  "
            f"{s['alarm_share']['pain']:>10.0%}  {_delays(s['alarm_delay_s']['pain']):>19}  {s['pain_within']:>6.0%}")


def describe_night(result: dict[str, Any]) -> str:
    """The human table."""
    spells, free = result["spells"], result["cry_free"]
    counts = ", ".join(f"{k} {spells[k]['n']}" for k in SPELL_KINDS if k in spells)
    lines = [f"night: {len(result['per_stream'])} streams in {result['night']} ({spells['all']['n'] if spells else 0} "
             f"spells: {counts or 'none'}; {free['streams']} cry-free, {free['hours']:.2f} h)",
             f"monitor: detector {result['detector']}, head {result['head']} ({result['embedder']})"]
    if spells:
        lines += ["", f"{'spells':<16}{'n':>3}  {'shown<=5s':>9}  {'delay med/p90/max s':>19}  {'coverage':>8}  "
                      f"{'episodes max/mean':>17}  {'pain alarm':>10}  {'delay med/p90/max s':>19}  "
                      f"{f'<={PAIN_ALARM_WITHIN_S:.0f}s':>6}"]
        lines += [_spell_line(key, figures) for key, figures in spells.items()]
        other = [k for k in result["alarm_kinds"] if k != "pain"]
        if other:
            lines.append("  other alarms in spells (share of spells): " + ", ".join(
                f"{k} {spells['all']['alarm_share'][k]:.0%}" for k in other))
        lines.append(f"  outside their spell (before onset or after end + {SPELL_TAIL_S:.0f} s): "
                     f"{result['false_alarms_in_spell_streams']} alarms, {result['false_episodes_in_spell_streams']} episodes")
    by_kind = ", ".join(f"{k} {v:.2f}" for k, v in free["false_alarms_per_hour_by_kind"].items())
    lines += ["", f"cry-free: {free['streams']} streams, {free['hours']:.2f} h: {free['false_alarms']} false alarms = "
                  f"{free['false_alarms_per_hour']:.2f} per hour ({by_kind}); false episodes "
                  f"{free['false_episodes_per_hour']:.1f} per hour; logged crying {free['crying_min_per_hour']:.2f} min "
                  "per hour", "", "targets:"]
    if spells and "crying" not in result["alarm_kinds"]:
        lines.append("  (this monitor raises no crying alarm: the crying-alarm target reads 0 %)")
    for t in result["targets"]:
        value = "-" if t["value"] is None else (f"{t['value']:.2f}" if "hour" in t["target"] else f"{t['value']:.0%}")
        limit = f"{'<=' if t['at_most'] else '>='} {t['limit']:.2f}" if "hour" in t["target"] else \
            f"{'<=' if t['at_most'] else '>='} {t['limit']:.0%}"
        verdict = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        lines.append(f"  {t['target']:<46} {value:>7}  ({limit})  {verdict}")
    timing = result["timing"]
    lines.append(f"time: monitor {timing['monitor_s']:.0f} s for {timing['audio_s'] / 3600:.2f} h of audio "
                 f"({timing['x_real_time']:.0f}x real time)")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Commands


def _seconds_pair(text: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: give two numbers of seconds, e.g. 60,180") from exc
    return low, high


def add_night_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m train night`."""
    parser.add_argument("--data", type=Path, required=True, help="index.csv of the cry data")
    parser.add_argument("--more", type=Path, help="index.csv of the second collection (default: ../more/index.csv "
                                                  "beside --data): its split-group non-cries join the backgrounds")
    parser.add_argument("--out", type=Path, required=True, help="folder for nightNNN.flac, night.csv and meta.json")
    parser.add_argument("--split", choices=SIDES, default="test",
                        help="only clips of this side of the detector's split (val: the night to tune on)")
    parser.add_argument("--seed", type=int, default=0, help="mixing seed")
    parser.add_argument("--split-seed", type=int, default=0, help="detector split seed (the detectors' own is 0)")
    parser.add_argument("--kinds", nargs="+", choices=SPELL_KINDS, default=list(SPELL_KINDS), help="spell kinds")
    parser.add_argument("--streams-per-kind", type=int,
                        help="at most this many spells of each kind (default: every infant x EBR, every ESC-50 source, "
                             "up to --phone-max installations)")
    parser.add_argument("--phone-max", type=int, default=PHONE_MAX,
                        help=f"Donate-a-cry installations with >= {PHONE_MIN_CLIPS} audible cries, most cries first")
    parser.add_argument("--stream-s", type=float, default=STREAM_S, help="stream length")
    parser.add_argument("--spell-s", type=_seconds_pair, default=SPELL_S, metavar="MIN,MAX", help="spell length, uniform")
    parser.add_argument("--clear-s", type=_seconds_pair, default=CLEAR_S, metavar="BEFORE,AFTER",
                        help="least stream before a spell's onset and after its end")
    parser.add_argument("--label-map", default=CRYWATCH, help="map in train/labelmaps.toml (not_cry = background)")


def cmd_night(args: argparse.Namespace) -> int:
    if args.streams_per_kind is not None and args.streams_per_kind < 1:
        raise DataError(f"--streams-per-kind {args.streams_per_kind}: need at least 1")
    if args.stream_s <= 0 or min(args.clear_s) < 0:
        raise DataError(f"--stream-s {args.stream_s:g} / --clear-s {args.clear_s}: need a positive stream and clearances")
    label_map = load_label_map(args.label_map)
    records = read_dataset(args.data, label_map)
    more = read_dataset(more_index(args.data, args.more), label_map)
    rows = write_night(records, more, args.out, args.split, args.seed, args.streams_per_kind, args.kinds,
                       args.phone_max, args.stream_s, tuple(args.spell_s), tuple(args.clear_s), args.split_seed,
                       getattr(args, "invocation", "python -m train night"))
    counts = {k: sum(r["kind"] == k for r in rows) for k in SPELL_KINDS if k in args.kinds}
    print(f"{len(rows)} streams of {args.stream_s:g} s of split {args.split} written to {args.out}: spells "
          + ", ".join(f"{k} {n}" for k, n in counts.items()) + f"; {sum(r['kind'] == 'none' for r in rows)} cry-free")
    return 0


def add_evaluate_night_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m train evaluate-night`."""
    parser.add_argument("--night", type=Path, required=True, help="folder written by `night`")
    parser.add_argument("--config", help="monitor config.toml (default: the project's)")
    parser.add_argument("--model", type=Path, help="cry detector folder (default: [detector] model)")
    parser.add_argument("--head", type=Path, help="type head folder (default: [classifier] head)")
    parser.add_argument("--json", action="store_true", help="print the full JSON instead of the table")
    parser.add_argument("--out", type=Path, help="also write the full JSON here")


def cmd_evaluate_night(args: argparse.Namespace) -> int:
    from monitor.config import load_settings
    from monitor.pipeline import Models

    read_night(args.night)  # a wrong folder fails before the models load
    settings = load_settings(args.config).with_overrides(
        detector={"model": str(args.model.resolve()) if args.model else None},
        classifier={"head": str(args.head.resolve()) if args.head else None})
    result = evaluate_night(args.night, settings, Models.load(settings))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1) if args.json else describe_night(result), end="\n" if args.json else "")
    return 0
