"""`python -m train` / `crywatch train`: fit a head, evaluate any labelled set, compare embedders."""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from monitor.audio import AudioError
from monitor.classify import Head, HeadError
from monitor.config import ConfigError, GateSettings
from monitor.detect import DetectorError
from monitor.embed import EmbedderError
from monitor.store import StoreError
from train.cache import DEFAULT_CACHE, EmbeddingCache
from train.card import model_card
from train.datasets import DataError, Record, more_index, read_dataset
from train.evaluate import evaluate, score
from train.labels import CRYWATCH, KeywordMap, LabelError, LabelMap, load_label_map
from train.mixing import HARD_KINDS, SIDES
from train.report import plot_set, report_markdown, write_json
from train.splits import LeakageError, Split

USER_ERRORS = (DataError, LabelError, LeakageError, HeadError, DetectorError, AudioError, EmbedderError, ConfigError,
               StoreError)
SHIPPED_FILES = ("head.json", "weights.npz", "report.json", "report.md", "MODEL_CARD.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crywatch train", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="train a head with grouped splits and write it with its report")
    fit.add_argument("--data", type=Path, required=True, help="index.csv (path,label,group[,source]) or a folder per label")
    fit.add_argument("--embedder", default="acoustic-v2",
                     help="an offline embedder id, or hear (weights and [hear] settings from --config)")
    fit.add_argument("--out", type=Path, required=True, help="head folder to write, e.g. models/acoustic-v1")
    fit.add_argument("--model", choices=("logistic", "mlp", "ensemble"), default="ensemble",
                     help="ensemble = mean of the MLP's and the logistic head's logits, exported as one network")
    fit.add_argument("--cv", type=int, default=5, help="grouped CV folds for the report (0 = held-out test only)")
    fit.add_argument("--negatives", choices=("all", "gated"), default="all",
                     help="not_cry training windows: all windows of non-cry files, or only those the gate passes")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--c", type=float, default=1.0, help="inverse L2 strength of the logistic head")
    fit.add_argument("--hidden", default="128,64", help="MLP hidden widths")
    fit.add_argument("--label-smoothing", type=float, default=0.1)
    fit.add_argument("--mixup", type=float, default=0.2, help="mixup alpha (0 = off)")
    fit.add_argument("--no-probes", action="store_true",
                     help="skip the embedding probes and the seed-protocol baselines (classical models)")
    fit.add_argument("--no-refit", action="store_true",
                     help="keep the model trained without the validation groups instead of refitting on them")
    fit.add_argument("--runs", type=Path, default=Path("runs"), help="where run folders go")
    fit.add_argument("--heldout-like-detector", action="store_true",
                     help="the detector's split: its test groups held out, its validation groups for validation "
                          "(with --no-refit they stay unseen, for tune-alerts), so the head's and the detector's "
                          "figures are on the same unseen infants")
    _common(fit)

    ev = sub.add_parser("evaluate", help="score a labelled set with a head, with the same metrics as fit")
    ev.add_argument("--data", type=Path, required=True)
    ev.add_argument("--model", type=Path, required=True, help="head folder (head.json + weights.npz)")
    ev.add_argument("--split", choices=("all", "heldout"), default="all",
                    help="heldout = only the groups the head was tested on (reproduces its report)")
    ev.add_argument("--json", action="store_true", help="print the full JSON instead of a summary")
    _common(ev)

    mix = sub.add_parser("mixtures", help="write fixed 30 s cry-in-background mixtures of one detector split "
                                          "(DCASE 2017 task 2 style)")
    mix.add_argument("--data", type=Path, required=True, help="index.csv of the cry data")
    mix.add_argument("--out", type=Path, required=True, help="folder for the FLAC mixtures, mixtures.csv and meta.json")
    mix.add_argument("--count", type=int, default=240, help="mixtures; every other one holds one cry")
    mix.add_argument("--split", choices=SIDES, default="test", help="only clips of this split's groups are used")
    mix.add_argument("--seed", type=int, default=0, help="mixing seed")
    mix.add_argument("--split-seed", type=int, default=0, help="detector split seed (the detector's own is 0)")
    mix.add_argument("--label-map", default=CRYWATCH, help="map in train/labelmaps.toml (not_cry = background)")
    mix.add_argument("--hard", action="store_true",
                     help="harder backgrounds: add the second collection's non-cries of the split and the synthesised "
                          "confusers (monitor, oximeter, ventilator and pump beeps, machine buzz)")
    mix.add_argument("--more", type=Path,
                     help="index.csv of the second collection, read with --hard (default: ../more/index.csv beside --data)")

    events = sub.add_parser("evaluate-events", help="run the monitor over mixtures and score its episodes with sed_eval")
    events.add_argument("--mixtures", type=Path, required=True, help="folder written by `mixtures`")
    events.add_argument("--config", help="monitor config.toml (default: the project's)")
    events.add_argument("--model", type=Path, help="cry detector folder to score (default: [detector] model)")
    events.add_argument("--json", action="store_true", help="print the full JSON instead of the table")
    events.add_argument("--data", type=Path, help="index.csv of the cry data: also play each cry of the mixtures' groups "
                                                  "alone (clean-cry recall, pain alerts on pain and bath cries)")
    events.add_argument("--label-map", default=CRYWATCH, help="map in train/labelmaps.toml (with --data)")

    tune = sub.add_parser("tune-alerts", help="choose a head's alert thresholds on the detector's validation groups: "
                                              "the lowest at which no cry-free mixture alerts")
    tune.add_argument("--head", type=Path, required=True, help="head folder whose head.json gets alert_thresholds")
    tune.add_argument("--data", type=Path, required=True, help="index.csv of the cry data (the validation cries)")
    tune.add_argument("--mixtures", type=Path, nargs="+", required=True,
                      help="folders written by `mixtures --split val` (plain and --hard): their cry-free mixtures")
    tune.add_argument("--config", help="monitor config.toml (default: the project's)")
    tune.add_argument("--detector", type=Path, help="cry detector folder (default: [detector] model)")
    tune.add_argument("--label-map", default=CRYWATCH, help="map in train/labelmaps.toml")

    site = sub.add_parser("evaluate-site", help="the running model on a unit's reviewed episodes (from its log)")
    site.add_argument("--db", required=True, help="SQLAlchemy URL of the monitor's log, e.g. sqlite:///crywatch.db")
    site.add_argument("--model", type=Path, help="also score this head on the stored embeddings ([store] log_embeddings)")
    site.add_argument("--json", action="store_true")

    det = sub.add_parser("detector", help="train the frame-level cry detector on mixtures made on the fly")
    det.add_argument("--data", type=Path, required=True, help="index.csv of the cry data")
    det.add_argument("--out", type=Path, required=True, help="detector folder to write, e.g. models/cry-detector-v1")
    det.add_argument("--examples", type=int, default=6000, help="training examples of 8 s, mixed once per run")
    det.add_argument("--epochs", type=int, default=20)
    det.add_argument("--channels", default="16,32,48", help="conv block widths")
    det.add_argument("--hidden", type=int, default=64, help="GRU width")
    det.add_argument("--delay-frames", type=int, default=20,
                     help="20 ms frames the GRU hears past a frame before scoring it (look-ahead, part of the latency)")
    det.add_argument("--tuning-mixtures", type=int, default=120,
                     help="30 s validation-group mixtures on which the run thresholds are chosen")
    det.add_argument("--seed", type=int, default=0)
    det.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of the one-cycle schedule")
    det.add_argument("--init", type=Path, help="continue training this detector (its architecture; same split seed)")
    det.add_argument("--hard-negatives", type=float, default=0.0,
                     help="share of examples with one training negative the --init detector mistakes for a cry")
    det.add_argument("--late-onsets", type=float, default=0.0,
                     help="share of cries placed anywhere in their example, the tail cut (onsets after background)")
    det.add_argument("--onset-weight", type=float, default=1.0,
                     help="loss weight of the frames from 0.2 s before to 1 s after each cry onset")
    det.add_argument("--split-seed", type=int, default=0, help="detector split seed (mixtures must use the same)")
    det.add_argument("--runs", type=Path, default=Path("runs"), help="where run folders go")
    det.add_argument("--label-map", default=CRYWATCH, help="map in train/labelmaps.toml (not_cry = background)")
    det.add_argument("--workers", type=int, default=0, help="processes for mixing (0 = all cores)")
    det.add_argument("--config", help="config.toml whose [episodes] quiet_s the tuning uses (default: the project's)")
    det.add_argument("--hard-backgrounds", action="store_true",
                     help="train and tune on the --hard backgrounds of `mixtures` (the second collection's non-cries "
                          "and the synthesised confusers)")
    det.add_argument("--more", type=Path, help="index.csv of the second collection, read with --hard-backgrounds "
                                               "(default: ../more/index.csv beside --data)")

    fuse = sub.add_parser("fuse-detector", help="detector v2: a trained CRNN fused with YAMNet, fitted and tuned on "
                                                "validation groups with a recall floor")
    fuse.add_argument("--data", type=Path, required=True, help="index.csv of the cry data")
    fuse.add_argument("--out", type=Path, required=True, help="detector folder to write, e.g. models/cry-detector-v2")
    fuse.add_argument("--base", type=Path, default=Path("models/cry-detector-v1"), help="the CRNN detector to fuse")
    fuse.add_argument("--backbone", type=Path, default=Path("models/yamnet"), help="YAMNet model folder")
    fuse.add_argument("--hop-frames", type=int, default=48, help="backbone patch hop in its 10 ms frames (YAMNet's own)")
    fuse.add_argument("--run-above", type=float, default=0.05,
                      help="the backbone scores a patch only where the CRNN reaches this (silence costs nothing)")
    fuse.add_argument("--tuning-mixtures", type=int, default=120,
                      help="30 s validation-group mixtures of each kind (plain and --hard) for the fit")
    fuse.add_argument("--head-from", type=Path, help="a fused detector whose backbone head to keep (refit the rest only)")
    fuse.add_argument("--head-examples", type=int, default=1500,
                      help="8 s training-group examples for the linear cry head on YAMNet's embedding")
    fuse.add_argument("--more", type=Path, help="index.csv of the second collection (default: ../more/index.csv beside "
                                                "--data): its training-group negatives teach the backbone head")
    fuse.add_argument("--seed", type=int, default=0, help="mixing seed of the tuning mixtures")
    fuse.add_argument("--runs", type=Path, default=Path("runs"), help="where run folders go")
    fuse.add_argument("--label-map", default=CRYWATCH, help="map in train/labelmaps.toml (not_cry = background)")
    fuse.add_argument("--config", help="config.toml whose [episodes] quiet_s the tuning uses (default: the project's)")

    card = sub.add_parser("card", help="re-render MODEL_CARD.md and report.md of a head folder from its report.json")
    card.add_argument("--model", type=Path, required=True)

    yamnet = sub.add_parser("yamnet-export", help="Coral's YAMNet .tflite → a numpy model folder (needs tensorflow)")
    yamnet.add_argument("--tflite", type=Path, required=True, help="yamnet_spectra_in.tflite (LICENSE and class map beside it)")
    yamnet.add_argument("--out", type=Path, default=Path("models/yamnet"), help="model folder to write")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-map", default=CRYWATCH, help="map in train/labelmaps.toml")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="embedding cache (env CRYWATCH_CACHE)")
    parser.add_argument("--workers", type=int, default=0, help="processes for embedding (0 = all cores)")
    parser.add_argument("--config", help="config.toml whose [hear] section locates HeAR weights (default: the project's)")
    parser.add_argument("--detector", type=Path,
                        help="cry detector folder whose windows the head types (default: the project's [detector] model)")
    parser.add_argument("--with-more", action="store_true",
                        help="add the second collection: adult vocalisations, urban sounds, raw phone uploads")
    parser.add_argument("--more", type=Path,
                        help="its index.csv, read with --with-more (default: ../more/index.csv beside --data)")


def cmd_evaluate_site(args: argparse.Namespace) -> int:
    from monitor.store import open_engine
    from train.site import describe, evaluate_site

    result = evaluate_site(open_engine(args.db), Head.load(args.model) if args.model else None)
    print(json.dumps(result, indent=1) if args.json else describe(result))
    return 0


def cmd_yamnet_export(args: argparse.Namespace) -> int:
    from train.yamnet_export import run_command  # tensorflow is imported only for the export

    return run_command(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.invocation = "python -m train " + " ".join(argv)
    try:
        return {"fit": cmd_fit, "evaluate": cmd_evaluate, "card": cmd_card, "mixtures": cmd_mixtures,
                "detector": cmd_detector, "evaluate-events": cmd_evaluate_events,
                "evaluate-site": cmd_evaluate_site, "yamnet-export": cmd_yamnet_export,
                "fuse-detector": cmd_fuse_detector, "tune-alerts": cmd_tune_alerts}[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------------------


def cmd_fit(args: argparse.Namespace) -> int:
    from train.models import MLPConfig  # torch is imported only for fitting
    from train.pipeline import FitConfig, class_list, cross_validate, holdout_fit

    label_map = load_label_map(args.label_map)
    cries, more = _collections(args, label_map)
    records = cries + (more or [])
    gate = GateSettings()
    cache = EmbeddingCache(args.cache_dir, args.embedder, gate, args.config, args.detector)
    windows = cache.embed(records, args.workers)
    classes = class_list(records, label_map.vocabulary)
    mlp = MLPConfig(hidden=tuple(int(h) for h in args.hidden.split(",")), label_smoothing=args.label_smoothing,
                    mixup_alpha=args.mixup, seed=args.seed)
    config = FitConfig(embedder=cache.embedder_id, model=args.model, cv_folds=args.cv, seed=args.seed,
                       negatives=args.negatives, logistic_c=args.c, mlp=mlp, refit=not args.no_refit)
    sides = _detector_sides(cache.detector, cries, more) if args.heldout_like_detector else None
    head, outer, inner, heldout = holdout_fit(records, windows, classes, config, args.out.name, sides)
    scored = {"heldout": heldout}
    if args.cv:
        scored["cv"] = cross_validate(records, windows, classes, config)
    metrics = {tag: evaluate(s) for tag, s in scored.items()}
    probes = {} if args.no_probes else run_probes(records, windows, args.seed)
    report = _fit_report(args, config, head, records, (outer, inner), metrics, probes, cache)
    head = dataclasses.replace(head, metadata={
        **head.metadata, "label_map": args.label_map, "gate": dataclasses.asdict(gate), "detector": cache.detector_id,
        "model": args.model,
        "heldout_groups": sorted({records[i].key for i in outer.test}),
        "heldout_summary": {c: m["auc"] for c, m in metrics["heldout"]["file"]["per_class"].items()},
    })
    run = args.runs / f"{args.out.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    write_run(run, head, report, scored)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in run.iterdir():
        if path.name in SHIPPED_FILES or path.suffix == ".png":
            shutil.copy2(path, args.out / path.name)
    print(summary(report), end="")
    print(f"run folder {run}; head written to {args.out}", file=sys.stderr)
    return 0


def _fit_report(args: argparse.Namespace, config, head: Head, records: list[Record], splits: tuple, metrics: dict,
                probes: dict, cache: EmbeddingCache) -> dict:
    from train.probes import probes_markdown

    return {
        "name": args.out.name, "embedder": args.embedder, "model": args.model, "config": dataclasses.asdict(config),
        "classes": list(head.classes), "seed": args.seed, "negatives": args.negatives, "command": args.invocation,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "data": {**_data_summary(args.data, records),
                 **({"more": str(more_index(args.data, args.more))} if args.with_more else {})},
        "detector": cache.detector_id,
        "split": {**_split_summary(records, *splits), **({"method": "the detector's split (both collections): its "
                                                                   "test groups held out, its validation groups validate"}
                                                        if args.heldout_like_detector else {})},
        "head": {"temperature": head.temperature, "thresholds": head.thresholds,
                 "thresholds_rule": head.metadata["thresholds_rule"], **head.metadata},
        "cache": {"hits": cache.hits, "misses": cache.misses, "folder": str(cache.folder)},
        "metrics": metrics,
        "probes": probes,
        "extra_markdown": probes_markdown(probes) if probes else [],
        "reproduce": [args.invocation,
                      f"python -m train evaluate --data {args.data} --model {args.out} --split heldout --json"
                      + (f" --detector {args.detector}" if args.detector else "") + (" --with-more" if args.with_more else "")
                      + (f" --more {args.more}" if args.more else "")],
    }


def run_probes(records: list[Record], windows: list, seed: int) -> dict:
    from train.probes import pooled, probe_tasks, seed_protocol

    x = pooled(windows)
    seed_map = load_label_map("seed")
    assert isinstance(seed_map, KeywordMap), "labelmaps.toml's seed map is a keyword map"
    return {"tasks": probe_tasks(records, x, seed), "seed_protocol": seed_protocol(records, x, seed_map, seed)}


def write_run(run: Path, head: Head, report: dict, scored: dict) -> None:
    run.mkdir(parents=True, exist_ok=True)
    head.save(run)
    plots = {}
    for tag, result in scored.items():
        plots[tag] = plot_set(run, tag, result, report["metrics"][tag])
    write_json(run / "report.json", report)
    (run / "report.md").write_text(report_markdown(report, plots))
    (run / "MODEL_CARD.md").write_text(model_card(report))


def cmd_card(args: argparse.Namespace) -> int:
    path = args.model / "report.json"
    if not path.is_file():
        raise DataError(f"no report.json in {args.model}: run `python -m train fit --out {args.model}` first")
    report = json.loads(path.read_text())
    plots = {tag: sorted(p.name for p in args.model.glob(f"*_{tag}.png")) for tag in report["metrics"]}
    (args.model / "report.md").write_text(report_markdown(report, plots))
    (args.model / "MODEL_CARD.md").write_text(model_card(report))
    return 0


def _data_summary(data: Path, records: list[Record]) -> dict:
    return {"index": str(data), "files": len(records), "groups": len({r.key for r in records}),
            "per_source": dict(Counter(r.source for r in records)),
            "per_class": dict(Counter(r.target for r in records))}


def _split_summary(records: list[Record], outer, inner) -> dict:
    def groups(idx):
        return len({records[i].key for i in idx})

    return {"method": "StratifiedGroupKFold by source:class, groups namespaced by source",
            "test_groups": groups(outer.test), "test_files": len(outer.test),
            "val_groups": groups(inner.test), "val_files": len(inner.test),
            "train_groups": groups(inner.train), "train_files": len(inner.train)}


def summary(report: dict) -> str:
    lines = []
    for tag, metrics in report["metrics"].items():
        f = metrics["file"]
        lines.append(f"[{tag}] files {f['n']}: accuracy {f['accuracy']:.3f}  weighted F1 {f['weighted_f1']:.3f}  "
                     f"UAR {f['uar']:.3f}  ECE(window) {metrics['window']['ece']:.3f}")
        for c, m in f["per_class"].items():
            lines.append(f"[{tag}] {c:<10} files {m['support']:4d}  recall {m['recall']:.3f}  "
                         f"AUC {m['auc']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]")
        for name, t in metrics["tasks"].items():
            if "file" in t:
                ci = t["file"]["ci95"]
                lines.append(f"[{tag}] task {name}: AUC {t['file']['auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
    return "\n".join(lines) + "\n"


def _detector_sides(detector_folder: str, cries: list[Record], more: list[Record] | None) -> tuple[Split, Split]:
    """The detector's own split of `cries + more`: its test groups are the head's held-out test set and its
    validation groups the head's validation set (train+val vs test, train vs val)."""
    from monitor.detect import DetectorModel
    from train.mixing import detector_split

    seed = int(DetectorModel.load(detector_folder).metadata.get("training", {}).get("split_seed", 0))
    side = {r.split_key: name for name, rs in detector_split(cries, seed, more).items() for r in rs}
    of = np.array([side[r.split_key] for r in cries + (more or [])])
    return (Split(np.flatnonzero(of != "test"), np.flatnonzero(of == "test")),
            Split(np.flatnonzero(of == "train"), np.flatnonzero(of == "val")))


def _collections(args: argparse.Namespace,
                 label_map: LabelMap | KeywordMap) -> tuple[list[Record], list[Record] | None]:
    """--data, and with --with-more the second collection (Record.split_key keeps an installation or a Freesound
    id on one side across both)."""
    if args.more is not None and not args.with_more:
        raise DataError("--more is read only with --with-more: add --with-more, or drop --more")
    cries = read_dataset(args.data, label_map)
    return cries, read_dataset(more_index(args.data, args.more), label_map) if args.with_more else None


def cmd_evaluate(args: argparse.Namespace) -> int:
    head = Head.load(args.model)
    label_map = load_label_map(head.metadata.get("label_map", args.label_map))
    cries, more = _collections(args, label_map)
    records = cries + (more or [])
    if args.split == "heldout":
        keep = set(head.metadata.get("heldout_groups", []))
        records = [r for r in records if r.key in keep]
        if not records:
            raise DataError(f"no recording of {args.data} is in the held-out groups of {args.model}: use --split all")
    gate = _trained_gate(head, args.model)
    cache = EmbeddingCache(args.cache_dir, head.embedder_id, gate, args.config, args.detector)
    head.check_embedder(cache.embedder_id, head.dim)
    windows = cache.embed(records, args.workers)
    if windows and windows[0].vectors.shape[1] != head.dim:
        raise HeadError(f"head {args.model} expects dim {head.dim}, embedder {head.embedder_id} "
                        f"gives {windows[0].vectors.shape[1]}")
    result = {"model": str(args.model), "data": str(args.data), "split": args.split, "classes": list(head.classes),
              "files": len(records), **evaluate(score(head, records, windows))}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(summary({"metrics": {args.split: result}}), end="")
    return 0


def _trained_gate(head: Head, folder: Path) -> GateSettings:
    """The gate a head was trained behind; a head from the old rule-based gate must be retrained."""
    trained = head.metadata.get("gate", {})
    known = {f.name for f in dataclasses.fields(GateSettings)}
    if set(trained) - known:
        old = ", ".join(sorted(set(trained) - known))
        raise HeadError(f"head {folder} was trained behind the old rule-based cry gate ({old}): retrain it with "
                        f"`python -m train fit --out {folder}` so it types the windows the detector passes")
    return GateSettings(**trained)


def cmd_detector(args: argparse.Namespace) -> int:
    from train.detector import run_command  # torch is imported only for training

    if args.hard_negatives and not args.init:
        raise DataError("--hard-negatives needs --init: the hard negatives are the ones that detector mistakes for cries")
    if not 0 <= args.hard_negatives <= 1:
        raise DataError(f"--hard-negatives {args.hard_negatives}: a share of the examples, 0..1")
    if not 0 <= args.late_onsets <= 1:
        raise DataError(f"--late-onsets {args.late_onsets}: a share of the cries, 0..1")
    if not math.isfinite(args.onset_weight) or args.onset_weight <= 0:
        raise DataError(f"--onset-weight {args.onset_weight}: a positive loss weight")
    if args.more is not None and not args.hard_backgrounds:
        raise DataError("--more is read only with --hard-backgrounds: add it, or drop --more")
    return run_command(args)


def cmd_fuse_detector(args: argparse.Namespace) -> int:
    from train.fusion import run_command  # sklearn is imported only for the fit

    if args.hop_frames < 1 or not 0 <= args.run_above < 1:
        raise DataError(f"--hop-frames {args.hop_frames} / --run-above {args.run_above}: need a hop >= 1 and 0 <= run-above < 1")
    return run_command(args)


def cmd_mixtures(args: argparse.Namespace) -> int:
    from train.benchmark import write_mixtures

    if args.count < 1:
        raise DataError(f"--count {args.count}: need at least 1 mixture")
    if args.more is not None and not args.hard:
        raise DataError("--more is read only with --hard: add --hard, or drop --more")
    label_map = load_label_map(args.label_map)
    records = read_dataset(args.data, label_map)
    more = read_dataset(more_index(args.data, args.more), label_map) if args.hard else None
    rows = write_mixtures(records, args.out, args.count, args.split, args.seed, args.invocation, args.split_seed,
                          more, HARD_KINDS if args.hard else ())
    print(f"{len(rows)} mixtures ({sum(r['cry'] for r in rows)} with a cry) of split {args.split} written to {args.out}")
    return 0


def cmd_tune_alerts(args: argparse.Namespace) -> int:
    from monitor.audio import load_audio
    from monitor.config import load_settings
    from monitor.pipeline import Models
    from train.alerts import MIN_ALERT_RATE, tune_alert_thresholds
    from train.benchmark import read_mixtures
    from train.mixing import detector_split, event_bounds

    metas = []
    for folder in args.mixtures:
        read_mixtures(folder)
        if not (folder / "meta.json").is_file():
            raise DataError(f"{folder / 'meta.json'} not found: write the mixtures with `python -m train mixtures`")
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("split") != "val":
            raise DataError(f"{folder} holds {meta.get('split')!r}-group mixtures: tune on validation groups only "
                            f"(`python -m train mixtures --split val --out ...`)")
        metas.append(meta)
    split_seeds = {int(m.get("split_seed", 0)) for m in metas}
    if len(split_seeds) != 1:
        raise DataError(f"the mixtures come from different detector splits (split seeds {sorted(split_seeds)})")
    settings = load_settings(args.config).with_overrides(classifier={"head": str(args.head.resolve())}, **(
        {"detector": {"model": str(args.detector.resolve())}} if args.detector else {}))
    models = Models.load(settings)
    val = detector_split(read_dataset(args.data, load_label_map(args.label_map)), split_seeds.pop())["val"]
    cries: dict[str, list] = {}
    for record in val:
        if record.target in settings.alerts.classes:
            samples = load_audio(record.path)
            if event_bounds(samples) is not None:  # the clean-cry benchmark's own rule for an audible cry
                cries.setdefault(record.target, []).append(samples)
    cry_free = [load_audio(folder / row["filename"]) for folder in args.mixtures
                for row in read_mixtures(folder) if row["cry"] != "1"]
    tunings = tune_alert_thresholds(settings, models, cries, cry_free)
    head = models.head
    reports = [t.report(len(cries.get(t.label, [])), len(cry_free)) for t in tunings]
    metadata = {**head.metadata, "alert_thresholds": {t.label: t.chosen for t in tunings},
                "alert_tuning": {"rule": "the lowest threshold at which no cry-free validation mixture alerts "
                                         "(met: >= 90 % of the class's clean validation cries still alert)",
                                 "detector": models.detector.id, "raise_windows": settings.alerts.raise_windows,
                                 "mixtures": [str(f) for f in args.mixtures], "command": args.invocation,
                                 "classes": reports}}
    dataclasses.replace(head, metadata=metadata).save(args.head)
    report_path = args.head / "report.json"
    if report_path.is_file():  # the card says which thresholds alert
        report = {**json.loads(report_path.read_text()), "alert_tuning": metadata["alert_tuning"]}
        write_json(report_path, report)
        (args.head / "MODEL_CARD.md").write_text(model_card(report))
    for t, r in zip(tunings, reports):
        print(f"{t.label}: alert threshold {t.chosen:.2f} (window threshold {t.head_threshold:.2f}); "
              f"{r['cry_rate']:.0%} of {r['validation_cries']} validation {t.label} cries alert; no cry-free mixture "
              f"alerts (of {r['cry_free_mixtures']}; {t.cry_free_alerts_at_head_threshold} at the window threshold)"
              + ("" if t.met else f"; fewer than {MIN_ALERT_RATE:.0%} of the cries alert with a silent cry-free set"))
    print(f"written to {args.head / 'head.json'}", file=sys.stderr)
    return 0


def cmd_evaluate_events(args: argparse.Namespace) -> int:
    from monitor.config import load_settings
    from monitor.detect.yamnet import YamnetModel
    from monitor.pipeline import Models
    from train.benchmark import describe, evaluate_clean_cries, evaluate_events, read_mixtures

    read_mixtures(args.mixtures)  # a wrong folder fails before the models load
    settings = load_settings(args.config)
    if args.model is not None:
        settings = settings.with_overrides(detector={"model": str(args.model.resolve())})
    models = Models.load(settings)
    result = evaluate_events(args.mixtures, settings, models)
    if args.data is not None:
        groups = set(json.loads((args.mixtures / "meta.json").read_text())["split_groups"])
        cries = [r for r in read_dataset(args.data, load_label_map(args.label_map))
                 if r.target != "not_cry" and r.key in groups]
        result["clean_cries"] = evaluate_clean_cries(cries, settings, models, YamnetModel.load())
    print(json.dumps(result, indent=1) if args.json else describe(result), end="\n" if args.json else "")
    return 0
