"""`python -m train` / `crywatch train`: fit a head, evaluate any labelled set, compare embedders."""
# Parsing and dispatch only (the docstring above is --help's description): the commands are the type heads'
# (train/heads/commands.py) and the detector's (train/detector/commands.py).
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from monitor.audio import AudioError
from monitor.classify import HeadError
from monitor.config import ConfigError
from monitor.detect import DetectorError
from monitor.embed import EmbedderError
from monitor.store import StoreError
from train.datasets import DataError
from train.detector import commands as detector
from train.detector import night
from train.detector.mixing import SIDES
from train.heads import commands as heads
from train.heads import evidence
from train.heads.cache import DEFAULT_CACHE
from train.labels import CRYWATCH, LabelError
from train.splits import LeakageError

USER_ERRORS = (DataError, LabelError, LeakageError, HeadError, DetectorError, AudioError, EmbedderError, ConfigError,
               StoreError)


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
                          "(with --no-refit they stay unseen, for fit-evidence), so the head's and the detector's "
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

    night.add_night_arguments(sub.add_parser("night", help="10-minute bedside streams with one crying spell each (or "
                                             "none) from a split's groups, over dense backgrounds"))
    night.add_evaluate_night_arguments(sub.add_parser("evaluate-night", help="run the monitor over a night and score its "
                                                      "spells, alarms and cry-free hours"))
    evidence.add_arguments(sub.add_parser("fit-evidence", help="a head's evidence model and spell rule for an alert "
                                          "class (pain against discomfort), chosen on validation spells"))

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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.invocation = "python -m train " + " ".join(argv)
    try:
        return {"fit": heads.cmd_fit, "evaluate": heads.cmd_evaluate, "card": heads.cmd_card,
                "mixtures": detector.cmd_mixtures, "detector": detector.cmd_detector,
                "evaluate-events": detector.cmd_evaluate_events, "evaluate-site": heads.cmd_evaluate_site,
                "yamnet-export": detector.cmd_yamnet_export, "fuse-detector": detector.cmd_fuse_detector,
                "night": night.cmd_night, "evaluate-night": night.cmd_evaluate_night,
                "fit-evidence": evidence.run_command}[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
