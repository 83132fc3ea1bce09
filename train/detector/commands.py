"""The detector's commands: detector, fuse-detector, mixtures, evaluate-events and yamnet-export (train/cli.py
parses them)."""
from __future__ import annotations

import argparse
import json
import math

from train.datasets import DataError, more_index, read_dataset
from train.detector.mixing import HARD_KINDS
from train.labels import load_label_map


def cmd_detector(args: argparse.Namespace) -> int:
    from train.detector.training import run_command  # torch is imported only for training

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
    from train.detector.fusion import run_command  # sklearn is imported only for the fit

    if args.hop_frames < 1 or not 0 <= args.run_above < 1:
        raise DataError(f"--hop-frames {args.hop_frames} / --run-above {args.run_above}: need a hop >= 1 and 0 <= run-above < 1")
    return run_command(args)


def cmd_mixtures(args: argparse.Namespace) -> int:
    from train.detector.benchmark import write_mixtures

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


def cmd_evaluate_events(args: argparse.Namespace) -> int:
    from monitor.config import load_settings
    from monitor.detect.yamnet import YamnetModel
    from monitor.pipeline import Models
    from train.detector.benchmark import describe, evaluate_clean_cries, evaluate_events, read_mixtures

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


def cmd_yamnet_export(args: argparse.Namespace) -> int:
    from train.detector.yamnet_export import run_command  # tensorflow is imported only for the export

    return run_command(args)

