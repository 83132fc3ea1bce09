"""The type heads' commands: fit, evaluate, card and evaluate-site (train/cli.py parses them; fit-evidence is evidence.py's)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from monitor.classify import Head, HeadError
from monitor.config import GateSettings
from train.datasets import DataError, Record, more_index, read_dataset
from train.heads.cache import EmbeddingCache
from train.heads.card import model_card
from train.heads.evaluate import evaluate, score
from train.heads.report import plot_set, report_markdown, write_json
from train.labels import KeywordMap, LabelMap, load_label_map
from train.splits import Split

SHIPPED_FILES = ("head.json", "weights.npz", "report.json", "report.md", "MODEL_CARD.md")


def cmd_fit(args: argparse.Namespace) -> int:
    from train.heads.models import MLPConfig  # torch is imported only for fitting
    from train.heads.pipeline import FitConfig, class_list, cross_validate, holdout_fit

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
    from train.heads.probes import probes_markdown

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
    from train.heads.probes import pooled, probe_tasks, seed_protocol

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
    from train.detector.mixing import detector_split

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


def cmd_evaluate_site(args: argparse.Namespace) -> int:
    from monitor.store import open_engine
    from train.heads.site import describe, evaluate_site

    result = evaluate_site(open_engine(args.db), Head.load(args.model) if args.model else None)
    print(json.dumps(result, indent=1) if args.json else describe(result))
    return 0


