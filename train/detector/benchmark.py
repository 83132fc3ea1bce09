"""DCASE 2017 task 2 style cry-event benchmark: fixed 30 s mixtures, the monitor's own batch driver, sed_eval scoring."""
from __future__ import annotations

import csv
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile
from tqdm import tqdm

from monitor.audio import load_audio
from monitor.messages import SAMPLE_RATE
from train.datasets import DataError, Record
from train.detector.mixing import (
    BackgroundMaker,
    ClipCache,
    detector_split,
    event_bounds,
    mix_at_ebr,
)

if TYPE_CHECKING:
    from monitor.config import Settings
    from monitor.detect.yamnet import YamnetModel
    from monitor.pipeline import Models

MIXTURE_SECONDS = 30.0
EBRS_DB = (-6, 0, 6)
COLUMNS = ("filename", "ebr_db", "cry", "onset_s", "offset_s", "cry_path", "cry_group", "backgrounds")
T_COLLAR = 0.5  # DCASE 2017 task 2: onset within 500 ms, offsets ignored
BOOTSTRAP = 1000
TOP_CLASSES = 15  # of the background table in the human summary; --json has all


# ---------------------------------------------------------------------------------------------
# Writing mixtures


def write_mixtures(records: list[Record], out: Path, count: int, split: str, seed: int, command: str,
                   split_seed: int = 0, more: list[Record] | None = None,
                   extra_kinds: tuple[str, ...] = ()) -> list[dict]:
    """`count` mixtures of the `split` groups into `out`: even indices hold one cry (EBR cycling -6/0/+6), odd none.

    The split has its own seed: mixtures with another mixing seed still come from the same groups
    the detector was (not) trained on. `more` (the second collection) adds its `split`-group non-cries to
    the backgrounds and `extra_kinds` adds synthesised kinds (the --hard benchmark); cries come from
    `records` only, as their labels are not a model's guess. Without either, nothing changes.
    """
    chosen = detector_split(records, split_seed, more)[split]
    extra = set(more or [])
    cries = [r for r in chosen if r.target != "not_cry" and r not in extra]
    negatives = [r for r in chosen if r.target == "not_cry" and r not in extra]
    extra_negatives = [r for r in chosen if r.target == "not_cry" and r in extra]
    if not cries or not negatives:
        raise DataError(f"split {split!r} has {len(cries)} cry and {len(negatives)} non-cry clips: need both")
    cache = ClipCache()
    backgrounds = BackgroundMaker(negatives, cache, extra_negatives, extra_kinds)
    order = [cries[i] for i in np.random.default_rng(seed).permutation(len(cries))]  # each cry once before repeats
    n = int(MIXTURE_SECONDS * SAMPLE_RATE)
    out.mkdir(parents=True, exist_ok=True)
    rows, used, next_cry = [], set(), 0
    for i in tqdm(range(count), desc="mixtures", unit="file"):
        rng = np.random.default_rng([seed, i])  # each mixture reproducible on its own
        mixture, classes = backgrounds.make(rng, MIXTURE_SECONDS)
        row: dict[str, Any] = {"filename": f"mix{i:04d}.flac", "ebr_db": "", "cry": 0, "onset_s": "", "offset_s": "",
               "cry_path": "", "cry_group": "", "backgrounds": ";".join(classes)}
        if i % 2 == 0:
            record, cry, bounds, next_cry = _next_cry(order, next_cry, cache, n - 2 * SAMPLE_RATE)
            ebr = EBRS_DB[(i // 2) % len(EBRS_DB)]
            position = int(rng.integers(SAMPLE_RATE, n - len(cry) - SAMPLE_RATE + 1))  # 1 s clear at both ends
            mixture = mix_at_ebr(mixture, cry, position, ebr)
            onset, offset = position + bounds[0], position + bounds[1]
            row.update(ebr_db=ebr, cry=1, onset_s=round(onset / SAMPLE_RATE, 3), offset_s=round(offset / SAMPLE_RATE, 3),
                       cry_path=record.rel, cry_group=record.key)
            used.add(record.key)
        write_mixture(out / row["filename"], mixture)
        rows.append(row)
    write_rows(out / "mixtures.csv", COLUMNS, rows)
    meta = {"seed": seed, "split": split, "split_seed": split_seed, "count": count, "seconds": MIXTURE_SECONDS,
            "command": command,
            "split_groups": sorted({r.key for r in chosen}), "cry_groups_used": sorted(used)}
    if more is not None or extra_kinds:
        meta |= {"more_negatives": len(extra_negatives), "extra_kinds": list(extra_kinds)}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return rows


def write_mixture(path: Path, mixture: np.ndarray) -> None:
    """16 kHz PCM_16 FLAC, with one gain for the whole mixture if it would clip: that keeps its EBRs."""
    peak = float(np.max(np.abs(mixture)))
    if peak > 0.99:
        mixture = mixture * (0.99 / peak)
    soundfile.write(path, mixture, SAMPLE_RATE, subtype="PCM_16", format="FLAC")


def write_rows(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def _next_cry(order: list[Record], index: int, cache: ClipCache,
              max_samples: int) -> tuple[Record, np.ndarray, tuple[int, int], int]:
    """The next cry in `order` (cyclic) that has any crying in its first `max_samples`, and the next index."""
    for step in range(len(order)):
        record = order[(index + step) % len(order)]
        clip = cache(record)[:max_samples]
        bounds = event_bounds(clip)
        if bounds is not None:
            return record, clip, bounds, index + step + 1
    raise DataError("no cry clip has any detectable crying: check the data")


# ---------------------------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class FileCounts:
    """sed_eval's counts for one mixture, so that bootstrap resamples need no re-matching."""

    nref: int
    nsys: int
    tp: int
    subs: int
    deletions: int
    insertions: int
    seconds: float
    cry_free: bool


def read_rows(path: Path, fix: str) -> list[dict[str, str]]:
    """A csv's rows; DataError naming `fix` where it is missing."""
    if not path.is_file():
        raise DataError(f"{path} not found: {fix}")
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def read_mixtures(folder: Path) -> list[dict[str, str]]:
    return read_rows(Path(folder) / "mixtures.csv", f"write mixtures first with `python -m train mixtures --out {folder}`")


def evaluate_events(folder: Path, settings: Settings, models: Models, seed: int = 0) -> dict[str, Any]:
    """Every mixture through monitor.analyze.analyze_samples; episodes scored as 'cry' events with sed_eval."""
    try:
        with warnings.catch_warnings():  # dcase_util imports pkg_resources, which warns on every run
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import sed_eval
    except ImportError as exc:
        raise DataError(f"sed_eval is not installed ({exc}): pip install -e '.[train]'") from exc
    from monitor.analyze import analyze_samples

    rows = read_mixtures(folder)
    metrics = sed_eval.sound_event.EventBasedMetrics(event_label_list=["cry"], t_collar=T_COLLAR,
                                                     evaluate_onset=True, evaluate_offset=False)
    counts, onset_errors, false_episodes, files = [], [], [], []
    decision_latencies, cry_free_alerts = [], 0
    timing = {"decode_s": 0.0, "monitor_s": 0.0, "score_s": 0.0, "audio_s": 0.0}
    for row in tqdm(rows, desc="evaluate", unit="file"):
        t0 = time.perf_counter()
        samples = load_audio(Path(folder) / row["filename"])
        t1 = time.perf_counter()
        _events, summary = analyze_samples(samples, settings, models)
        t2 = time.perf_counter()
        name = row["filename"]
        reference = [{"event_label": "cry", "onset": float(row["onset_s"]), "offset": float(row["offset_s"]),
                      "filename": name}] if row["cry"] == "1" else []
        estimated = [{"event_label": "cry", "onset": float(e["start_s"]), "offset": float(e["end_s"]), "filename": name}
                     for e in summary["episodes"]]
        before = dict(metrics.overall)
        metrics.evaluate(reference_event_list=reference, estimated_event_list=estimated)
        delta = {k: round(metrics.overall[k] - before[k]) for k in before}
        counts.append(FileCounts(delta["Nref"], delta["Nsys"], delta["Ntp"], delta["Nsubs"], delta["Nfn"] - delta["Nsubs"],
                                 delta["Nfp"] - delta["Nsubs"], len(samples) / SAMPLE_RATE, not reference))
        if reference:
            onset_errors.append(_onset_error(reference[0], estimated))
            found = [e for e in summary["episodes"] if abs(e["start_s"] - reference[0]["onset"]) <= T_COLLAR]
            if found:  # how much audio after the cry's first sample the monitor needed to publish the episode
                decision_latencies.append(found[0]["detected_s"] - reference[0]["onset"])
        else:
            cry_free_alerts += sum(bool(e["alert"]) for e in summary["episodes"])
        false_episodes.append(sum(not _overlaps(e, r) for e in estimated for r in reference) if reference else len(estimated))
        files.append({"filename": name, "ebr_db": row["ebr_db"], "backgrounds": row["backgrounds"],
                      "reference": reference[0] if reference else None,
                      "episodes": [[e["onset"], e["offset"]] for e in estimated], **delta})
        timing["decode_s"] += t1 - t0
        timing["monitor_s"] += t2 - t1
        timing["score_s"] += time.perf_counter() - t2
        timing["audio_s"] += len(samples) / SAMPLE_RATE
    overall = metrics.results_overall_metrics()
    return {
        "mixtures": str(folder), "files": len(rows), "cry_files": sum(not c.cry_free for c in counts),
        "scoring": {"toolbox": "sed_eval.sound_event.EventBasedMetrics", "t_collar": T_COLLAR,
                    "evaluate_onset": True, "evaluate_offset": False, "event_label": "cry (every episode)"},
        "overall": {"er": overall["error_rate"]["error_rate"], "f1": overall["f_measure"]["f_measure"],
                    "precision": overall["f_measure"]["precision"], "recall": overall["f_measure"]["recall"],
                    "substitution_rate": overall["error_rate"]["substitution_rate"],
                    "deletion_rate": overall["error_rate"]["deletion_rate"],
                    "insertion_rate": overall["error_rate"]["insertion_rate"],
                    **{k: int(v) for k, v in metrics.overall.items()}},
        "false_episodes_per_hour": _false_per_hour(counts),
        "alerts_in_cry_free_audio": cry_free_alerts,
        "decision_latency_s": _latency_summary(decision_latencies),
        "ci95": bootstrap(counts, seed),
        "onset_error": _onset_summary(onset_errors),
        "recall_by_ebr": _recall_by_ebr(rows, counts, onset_errors),
        "false_episodes_by_background": _false_by_class(rows, false_episodes),
        "timing": {**{k: round(v, 2) for k, v in timing.items()},
                   "x_real_time": round(timing["audio_s"] / max(timing["monitor_s"], 1e-9), 1)},
        "per_file": files,
    }


CLEAN_COLLAR_S = 1.0  # a clean cry must have opened an episode by its onset + this
ALERT_RATE_TARGETS = ("pain", "discomfort")  # Corvin's vaccination (pain) and bath (discomfort) cries


CRYING_CLASSES = ("Crying, sobbing", "Baby cry, infant cry", "Whimper")
DROWNED_OTHER = 0.7  # another AudioSet class at least this sure somewhere in the clip ...
DROWNED_CRY = 0.3  # ... while no crying class reaches this anywhere


def drowned_out(samples: np.ndarray, yamnet: YamnetModel) -> str | None:
    """The sound YAMNet hears instead of crying in a clip labelled as a cry, or None if it is a clean cry by this
    rule: another class at DROWNED_OTHER or more somewhere and no crying class at DROWNED_CRY anywhere. Some phone
    uploads labelled as cries are mostly the parents' speech, music or a television; they are not the clear cry in
    a quiet room that must always open an episode. The rule looks only at YAMNet, never at the detector."""
    from monitor.detect.yamnet import patches

    scores = yamnet.run(patches(samples, pad_end=True)).scores
    crying = [yamnet.classes.index(name) for name in CRYING_CLASSES]
    if scores[:, crying].max() >= DROWNED_CRY:
        return None
    other = scores.max(axis=0)
    other[crying] = 0.0
    best = int(np.argmax(other))
    return yamnet.classes[best] if other[best] >= DROWNED_OTHER else None


def evaluate_clean_cries(cries: list[Record], settings: Settings, models: Models,
                         yamnet: YamnetModel | None = None) -> dict[str, Any]:
    """Each cry alone, as `crywatch analyze` plays a file: the case a user meets first (a clear cry in a quiet
    room must open an episode). Opened = an episode starts by the cry's onset + CLEAN_COLLAR_S (the clip holds
    nothing else to start one). Alert rates per type: pain cries should raise a pain alert, bath cries should not.
    With `yamnet`, each missed clip that YAMNet hears as another sound is named (drowned_out)."""
    from monitor.analyze import analyze_samples
    from train.detector.mixing import event_bounds

    opened, missed, alerted, latencies = 0, [], {t: [0, 0] for t in ALERT_RATE_TARGETS}, []
    drowned: dict[str, str] = {}
    counted = 0
    for record in tqdm(cries, desc="clean cries", unit="cry"):
        samples = load_audio(record.path)
        bounds = event_bounds(samples)
        if bounds is None:  # no audible crying by the reference's own rule
            continue
        counted += 1
        onset = bounds[0] / SAMPLE_RATE
        _events, summary = analyze_samples(samples, settings, models)
        in_time = [e for e in summary["episodes"] if e["start_s"] <= onset + CLEAN_COLLAR_S]
        if in_time:
            opened += 1
            found = min(in_time, key=lambda e: e["start_s"])
            latencies.append(max(0.0, found["detected_s"] - onset))
        else:
            missed.append(record.rel)
            if yamnet is not None and (heard := drowned_out(samples, yamnet)) is not None:
                drowned[record.rel] = heard
        if record.target in alerted:
            alerted[record.target][0] += 1
            alerted[record.target][1] += any("pain" in e["alerts"] for e in summary["episodes"])
    return {"n": counted, "opened": opened, "recall": opened / counted if counted else float("nan"),
            "missed": missed, "missed_drowned_out": drowned, "detected_latency_s": _latency_summary(latencies),
            "pain_alerts": {t: {"n": n, "alerted": a, "rate": a / n if n else float("nan")}
                            for t, (n, a) in alerted.items()}}


def _latency_summary(latencies: list[float]) -> dict[str, Any]:
    """Cry onset → episode published, in the monitor's own clock (samples), for the cries found in the collar."""
    if not latencies:
        return {"n": 0}
    values = np.array(latencies)
    return {"n": len(values), "median": round(float(np.median(values)), 3),
            "p90": round(float(np.percentile(values, 90)), 3), "max": round(float(values.max()), 3)}


def _onset_error(reference: dict, estimated: list[dict]) -> float | None:
    """Episode start - reference onset, for the overlapping episode starting nearest it; None if none overlaps.

    Looser than sed_eval's 0.5 s collar on purpose: it shows how far off the detections that did fire are.
    """
    overlapping = [e["onset"] - reference["onset"] for e in estimated if _overlaps(e, reference)]
    return min(overlapping, key=abs) if overlapping else None


def _overlaps(a: dict, b: dict) -> bool:
    return a["onset"] < b["offset"] and a["offset"] > b["onset"]


def _false_per_hour(counts: list[FileCounts]) -> dict[str, float]:
    hours = sum(c.seconds for c in counts if c.cry_free) / 3600
    episodes = sum(c.nsys for c in counts if c.cry_free)
    return {"episodes": episodes, "hours": round(hours, 3), "per_hour": episodes / hours if hours else float("nan")}


def _onset_summary(errors: list[float | None]) -> dict[str, Any]:
    found = np.array([e for e in errors if e is not None])
    if not found.size:
        return {"n_cries": len(errors), "n_overlapped": 0}
    p10, median, p90 = np.percentile(found, [10, 50, 90])
    return {"n_cries": len(errors), "n_overlapped": int(found.size), "median_s": float(median), "p10_s": float(p10),
            "p90_s": float(p90), "within_collar": float(np.mean(np.abs(found) <= T_COLLAR))}


def _recall_by_ebr(rows: list[dict], counts: list[FileCounts], errors: list[float | None]) -> dict[str, dict]:
    cry_rows = [(row, c) for row, c in zip(rows, counts) if not c.cry_free]
    out = {}
    for ebr in sorted({row["ebr_db"] for row, _ in cry_rows}, key=float):
        picked = [(c, e) for (row, c), e in zip(cry_rows, errors) if row["ebr_db"] == ebr]
        out[ebr] = {"n": len(picked), "recall": sum(c.tp for c, _ in picked) / len(picked),
                    "overlapped": sum(e is not None for _, e in picked) / len(picked)}
    return out


def _false_by_class(rows: list[dict], false_episodes: list[int]) -> dict[str, dict]:
    """A mixture's false episodes are charged to every background class in it: co-occurrence, not causation."""
    table: dict[str, dict] = {}
    for row, false in zip(rows, false_episodes):
        for name in filter(None, row["backgrounds"].split(";")):
            entry = table.setdefault(name, {"mixtures": 0, "false_episodes": 0})
            entry["mixtures"] += 1
            entry["false_episodes"] += false
    return dict(sorted(table.items(), key=lambda kv: (-kv[1]["false_episodes"], kv[0])))


def bootstrap(counts: list[FileCounts], seed: int = 0, resamples: int = BOOTSTRAP) -> dict[str, list[float]]:
    """95 % percentile intervals of ER, F1 and false episodes/hour, resampling mixtures with replacement."""
    a = {f: np.array([getattr(c, f) for c in counts], dtype=float) for f in FileCounts.__dataclass_fields__}
    idx = np.random.default_rng(seed).integers(0, len(counts), (resamples, len(counts)))

    def total(field: str, mask: np.ndarray | None = None) -> np.ndarray:
        values = a[field] if mask is None else a[field] * mask
        return values[idx].sum(axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        nref = total("nref")
        er = (total("subs") + total("deletions") + total("insertions")) / nref
        f1 = 2 * total("tp") / (total("nsys") + nref)
        per_hour = total("nsys", a["cry_free"]) / total("seconds", a["cry_free"]) * 3600
    return {name: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
            for name, v in (("er", er), ("f1", f1), ("false_episodes_per_hour", per_hour))}


def describe(result: dict[str, Any]) -> str:
    """The human table."""
    o, ci, fp, on = result["overall"], result["ci95"], result["false_episodes_per_hour"], result["onset_error"]
    t = result["timing"]
    lines = [
        f"cry events: {result['files']} mixtures ({result['cry_files']} with one cry) in {result['mixtures']}",
        f"sed_eval event-based, onset collar {T_COLLAR} s, offsets ignored; 95 % CI: {BOOTSTRAP} bootstrap resamples of mixtures",
        (f"  ER         {o['er']:.3f}  [{ci['er'][0]:.3f}, {ci['er'][1]:.3f}]   "
         f"S {o['substitution_rate']:.3f}  D {o['deletion_rate']:.3f}  I {o['insertion_rate']:.3f}"),
        (f"  F1         {o['f1']:.3f}  [{ci['f1'][0]:.3f}, {ci['f1'][1]:.3f}]   "
         f"precision {o['precision']:.3f}  recall {o['recall']:.3f}  (Nref {o['Nref']}, Nsys {o['Nsys']}, TP {o['Ntp']})"),
        (f"  false episodes / hour of cry-free audio  {fp['per_hour']:.1f}  "
         f"[{ci['false_episodes_per_hour'][0]:.1f}, {ci['false_episodes_per_hour'][1]:.1f}]   "
         f"({fp['episodes']} episodes in {fp['hours']:.2f} h)"),
        "  recall by EBR: " + "   ".join(f"{float(e):+.0f} dB {r['recall']:.2f} (overlapped {r['overlapped']:.2f}, n {r['n']})"
                                         for e, r in result["recall_by_ebr"].items()),
    ]
    if on["n_overlapped"]:
        lines.append(f"  onset error (episode start - cry onset, {on['n_overlapped']}/{on['n_cries']} cries overlapped): "
                     f"median {on['median_s']:+.2f} s, p10 {on['p10_s']:+.2f}, p90 {on['p90_s']:+.2f}, "
                     f"within {T_COLLAR} s {on['within_collar']:.0%}")
    else:
        lines.append(f"  onset error: no episode overlapped any of the {on['n_cries']} cries")
    lat = result["decision_latency_s"]
    lines.append(f"  alerts in cry-free audio: {result['alerts_in_cry_free_audio']}")
    if lat["n"]:
        lines.append(f"  cry onset -> episode published (monitor clock, {lat['n']} cries found): median {lat['median']:.2f} s, "
                     f"p90 {lat['p90']:.2f} s, max {lat['max']:.2f} s")
    clean = result.get("clean_cries")
    if clean:
        pain, bath = clean["pain_alerts"]["pain"], clean["pain_alerts"]["discomfort"]
        lines.append(f"  clean cries alone (one file each, {clean['n']}): {clean['recall']:.1%} open an episode by onset + "
                     f"{CLEAN_COLLAR_S:.0f} s ({len(clean['missed'])} missed); pain alerts on pain cries "
                     f"{pain['alerted']}/{pain['n']}, on bath cries {bath['alerted']}/{bath['n']}")
        drowned = clean.get("missed_drowned_out", {})
        if drowned:
            lines.append(f"    of the missed, {len(drowned)} are clips YAMNet hears as another sound, not crying: "
                         + ", ".join(f"{Path(rel).name} ({heard})" for rel, heard in drowned.items()))
    table = result["false_episodes_by_background"]
    lines.append(f"  false episodes (not overlapping the cry) by background class present, top {TOP_CLASSES} of {len(table)}:")
    lines += [f"    {name:<18} {e['false_episodes']:4d} in {e['mixtures']:3d} mixtures "
              f"({e['false_episodes'] / e['mixtures']:.2f} each)"
              for name, e in list(table.items())[:TOP_CLASSES]]
    lines.append(f"  time: decode {t['decode_s']:.1f} s, monitor {t['monitor_s']:.1f} s for {t['audio_s'] / 3600:.2f} h "
                 f"({t['x_real_time']:.0f}x real time), sed_eval {t['score_s']:.1f} s")
    return "\n".join(lines) + "\n"
