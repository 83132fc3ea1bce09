"""`python -m train` / `crywatch train`: fit a head, evaluate any labelled set, compare embedders."""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

from monitor.audio import AudioError
from monitor.classify import Head, HeadError
from monitor.config import ConfigError, GateSettings
from monitor.embed import EmbedderError
from train.cache import DEFAULT_CACHE, EmbeddingCache
from train.card import model_card
from train.datasets import DataError, Record, read_dataset
from train.evaluate import evaluate, score
from train.labels import CRYWATCH, LabelError, load_label_map
from train.report import plot_set, report_markdown, write_json
from train.splits import LeakageError

USER_ERRORS = (DataError, LabelError, LeakageError, HeadError, AudioError, EmbedderError, ConfigError)
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
    _common(fit)

    ev = sub.add_parser("evaluate", help="score a labelled set with a head, with the same metrics as fit")
    ev.add_argument("--data", type=Path, required=True)
    ev.add_argument("--model", type=Path, required=True, help="head folder (head.json + weights.npz)")
    ev.add_argument("--split", choices=("all", "heldout"), default="all",
                    help="heldout = only the groups the head was tested on (reproduces its report)")
    ev.add_argument("--json", action="store_true", help="print the full JSON instead of a summary")
    _common(ev)

    card = sub.add_parser("card", help="re-render MODEL_CARD.md and report.md of a head folder from its report.json")
    card.add_argument("--model", type=Path, required=True)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--label-map", default=CRYWATCH, help="map in train/labelmaps.toml")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="embedding cache (env CRYWATCH_CACHE)")
    parser.add_argument("--workers", type=int, default=0, help="processes for embedding (0 = all cores)")
    parser.add_argument("--config", help="config.toml whose [hear] section locates HeAR weights (default: the project's)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    args.invocation = "python -m train " + " ".join(argv)
    try:
        return {"fit": cmd_fit, "evaluate": cmd_evaluate, "card": cmd_card}[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


# ---------------------------------------------------------------------------------------------


def cmd_fit(args: argparse.Namespace) -> int:
    from train.models import MLPConfig  # torch is imported only for fitting
    from train.pipeline import FitConfig, class_list, cross_validate, holdout_fit

    label_map = load_label_map(args.label_map)
    records = read_dataset(args.data, label_map)
    gate = GateSettings()
    cache = EmbeddingCache(args.cache_dir, args.embedder, gate, args.config)
    windows = cache.embed(records, args.workers)
    classes = class_list(records, label_map.vocabulary)
    mlp = MLPConfig(hidden=tuple(int(h) for h in args.hidden.split(",")), label_smoothing=args.label_smoothing,
                    mixup_alpha=args.mixup, seed=args.seed)
    config = FitConfig(embedder=cache.embedder_id, model=args.model, cv_folds=args.cv, seed=args.seed,
                       negatives=args.negatives, logistic_c=args.c, mlp=mlp, refit=not args.no_refit)
    head, outer, inner, heldout = holdout_fit(records, windows, classes, config, args.out.name)
    scored = {"heldout": heldout}
    if args.cv:
        scored["cv"] = cross_validate(records, windows, classes, config)
    metrics = {tag: evaluate(s) for tag, s in scored.items()}
    probes = {} if args.no_probes else run_probes(records, windows, args.seed)
    report = _fit_report(args, config, head, records, (outer, inner), metrics, probes, cache)
    head = dataclasses.replace(head, metadata={
        **head.metadata, "label_map": args.label_map, "gate": dataclasses.asdict(gate), "model": args.model,
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
        "data": _data_summary(args.data, records),
        "split": _split_summary(records, *splits),
        "head": {"temperature": head.temperature, "thresholds": head.thresholds,
                 "thresholds_rule": head.metadata["thresholds_rule"], **head.metadata},
        "cache": {"hits": cache.hits, "misses": cache.misses, "folder": str(cache.folder)},
        "metrics": metrics,
        "probes": probes,
        "extra_markdown": probes_markdown(probes) if probes else [],
        "reproduce": [args.invocation,
                      f"python -m train evaluate --data {args.data} --model {args.out} --split heldout --json"],
    }


def run_probes(records: list[Record], windows: list, seed: int) -> dict:
    from train.probes import pooled, probe_tasks, seed_protocol

    x = pooled(windows)
    return {"tasks": probe_tasks(records, x, seed), "seed_protocol": seed_protocol(records, x, load_label_map("seed"), seed)}


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
                lines.append(f"[{tag}] task {name}: AUC {t['file']['auc']:.3f} [{t['file']['ci95'][0]:.3f}, {t['file']['ci95'][1]:.3f}]")
    return "\n".join(lines) + "\n"


def cmd_evaluate(args: argparse.Namespace) -> int:
    head = Head.load(args.model)
    label_map = load_label_map(head.metadata.get("label_map", args.label_map))
    records = read_dataset(args.data, label_map)
    if args.split == "heldout":
        keep = set(head.metadata.get("heldout_groups", []))
        records = [r for r in records if r.key in keep]
        if not records:
            raise DataError(f"no recording of {args.data} is in the held-out groups of {args.model}: use --split all")
    gate = GateSettings(**head.metadata.get("gate", {}))
    cache = EmbeddingCache(args.cache_dir, head.embedder_id, gate, args.config)
    head.check_embedder(cache.embedder_id, head.dim)
    windows = cache.embed(records, args.workers)
    if windows and windows[0].vectors.shape[1] != head.dim:
        raise HeadError(f"head {args.model} expects dim {head.dim}, embedder {head.embedder_id} gives {windows[0].vectors.shape[1]}")
    result = {"model": str(args.model), "data": str(args.data), "split": args.split, "classes": list(head.classes),
              "files": len(records), **evaluate(score(head, records, windows))}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(summary({"metrics": {args.split: result}}), end="")
    return 0
