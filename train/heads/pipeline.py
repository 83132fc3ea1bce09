"""From labelled recordings to a calibrated Head, and the grouped evaluations of that recipe."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from monitor.classify import Head
from monitor.messages import NOT_CRY
from train.datasets import Record
from train.heads.cache import FileWindows
from train.heads.calibrate import f1_threshold, fit_temperature, nll
from train.heads.evaluate import Scored, logits_of, score
from train.heads.models import FittedHead, MLPConfig, average_logits, fit_logistic, fit_mlp
from train.splits import Split, check_leakage, grouped_folds, grouped_holdout, subset


@dataclass(frozen=True)
class FitConfig:
    embedder: str
    model: str = "mlp"
    test_fraction: float = 0.2  # grouped held-out test set of the shipped head
    val_fraction: float = 0.2  # groups of the rest used for early stopping, temperature, thresholds
    cv_folds: int = 5
    seed: int = 0
    # Cry-class windows: only those the gate passes (the head never sees others). not_cry windows:
    # "all" = gated hard negatives plus ungated ones, which widen the negative set; "gated" = runtime only.
    negatives: str = "all"
    logistic_c: float = 1.0
    mlp: MLPConfig = MLPConfig()
    # After temperature, thresholds (and the MLP's epoch count) are chosen on validation groups, refit on
    # training + validation groups with those settings: with 17 Corvin babies every baby counts.
    refit: bool = True


@dataclass(frozen=True)
class WindowSet:
    x: np.ndarray
    y: np.ndarray
    file: np.ndarray  # record index of each window


def class_list(records: list[Record], vocabulary: tuple[str, ...]) -> tuple[str, ...]:
    """The vocabulary's classes that have training data, not_cry first."""
    present = {r.target for r in records}
    return tuple(c for c in vocabulary if c in present)


def window_set(records: list[Record], windows: list[FileWindows], indices: np.ndarray,
               classes: tuple[str, ...], negatives: str) -> WindowSet:
    xs, ys, files = [], [], []
    for i in indices:
        fw, target = windows[i], records[i].target
        if target not in classes:
            continue
        keep = fw.gated if (target != NOT_CRY or negatives == "gated") else np.ones(len(fw.gated), bool)
        xs.append(fw.vectors[keep])
        ys.append(np.full(int(keep.sum()), classes.index(target)))
        files.append(np.full(int(keep.sum()), i))
    return WindowSet(np.concatenate(xs), np.concatenate(ys).astype(int), np.concatenate(files).astype(int))


def fit_head(records: list[Record], windows: list[FileWindows], split: Split, classes: tuple[str, ...],
             config: FitConfig, name: str) -> Head:
    """Train on split.train, then calibrate and set thresholds on split.test (the validation groups)."""
    train = window_set(records, windows, split.train, classes, config.negatives)
    val = window_set(records, windows, split.test, classes, "gated")  # what the head meets at run time
    fitted = _fit(train, val, classes, config)
    head = Head(name=name, embedder_id=config.embedder, dim=train.x.shape[1], classes=classes, thresholds={},
                temperature=1.0, mean=fitted.standardiser.mean, scale=fitted.standardiser.scale,
                layers=fitted.layers)
    logits = logits_of(head, val.x)
    temperature = fit_temperature(logits, val.y)
    head = dataclasses.replace(head, temperature=temperature)
    probs = head.predict_proba(val.x)
    thresholds = {c: round(f1_threshold(probs[:, k], val.y == k), 4) for k, c in enumerate(classes) if c != NOT_CRY}
    calibration = {"temperature": round(temperature, 4), "val_nll_before": round(nll(logits, val.y), 4),
                   "val_nll_after": round(nll(logits, val.y, temperature), 4), "val_windows": int(len(val.y))}
    if config.refit:
        train = window_set(records, windows, np.concatenate([split.train, split.test]), classes, config.negatives)
        fitted = _fit(train, None, classes, config, fitted.info)
        head = dataclasses.replace(head, mean=fitted.standardiser.mean, scale=fitted.standardiser.scale,
                                   layers=fitted.layers)
    return dataclasses.replace(head, thresholds=thresholds, metadata={
        "training": {**fitted.info, "train_windows": int(len(train.y)), "negatives": config.negatives,
                     "refit_on_validation_groups": config.refit,
                     "class_windows": {c: int((train.y == k).sum()) for k, c in enumerate(classes)}},
        "calibration": calibration,
        "thresholds_rule": "per class, the F1-maximising threshold on validation-group gated windows",
    })


def _fit(data: WindowSet, val: WindowSet | None, classes: tuple[str, ...], config: FitConfig,
         first: dict | None = None) -> FittedHead:
    """One model; with val=None (the refit) the MLP trains for the epochs early stopping chose before."""
    linear = fit_logistic(data.x, data.y, len(classes), config.logistic_c, config.seed)
    if config.model == "logistic":
        return linear
    if val is None:
        assert first is not None, "the refit is given the first fit's info"
        epochs = first["best_epoch"] + 1
        mlp = fit_mlp(data.x, data.y, data.x, data.y, len(classes),
                      dataclasses.replace(config.mlp, max_epochs=epochs, patience=epochs), early_stopping=False)
    else:
        mlp = fit_mlp(data.x, data.y, val.x, val.y, len(classes), config.mlp)
    return mlp if config.model == "mlp" else average_logits(mlp, linear)


def inner_split(records: list[Record], outer: Split, config: FitConfig) -> Split:
    """Validation groups carved out of the outer training groups."""
    inner = grouped_holdout(subset(records, outer.train), config.val_fraction, config.seed + 1)
    return Split(outer.train[inner.train], outer.train[inner.test])


def holdout_fit(records: list[Record], windows: list[FileWindows], classes: tuple[str, ...], config: FitConfig,
                name: str, sides: tuple[Split, Split] | None = None) -> tuple[Head, Split, Split, Scored]:
    """The shipped head: trained on train groups, calibrated on validation groups, scored on test groups
    (`sides` = (train+val vs test, train vs val) when given, else grouped hold-outs of its own)."""
    waves = [w.wave_sha1 for w in windows]
    outer = sides[0] if sides else grouped_holdout(records, config.test_fraction, config.seed)
    check_leakage(records, outer, waves)
    inner = sides[1] if sides else inner_split(records, outer, config)
    check_leakage(records, inner, waves)
    head = fit_head(records, windows, inner, classes, config, name)
    test = subset(records, outer.test)
    return head, outer, inner, score(head, test, [windows[i] for i in outer.test])


def cross_validate(records: list[Record], windows: list[FileWindows], classes: tuple[str, ...],
                   config: FitConfig) -> Scored:
    """Out-of-fold scores of every recording from grouped k-fold (each fold recalibrated on its own groups)."""
    waves = [w.wave_sha1 for w in windows]
    parts = []
    for k, outer in enumerate(grouped_folds(records, config.cv_folds, config.seed)):
        check_leakage(records, outer, waves)
        inner = inner_split(records, outer, config)
        check_leakage(records, inner, waves)
        head = fit_head(records, windows, inner, classes, dataclasses.replace(config, seed=config.seed + k), f"fold{k}")
        parts.append(score(head, subset(records, outer.test), [windows[i] for i in outer.test]))
    return merge(parts)


def merge(parts: list[Scored]) -> Scored:
    offsets = np.cumsum([0] + [len(p.records) for p in parts[:-1]])
    return Scored(
        classes=parts[0].classes,
        records=[r for p in parts for r in p.records],
        file_probs=np.concatenate([p.file_probs for p in parts]),
        gated_count=np.concatenate([p.gated_count for p in parts]),
        window_probs=np.concatenate([p.window_probs for p in parts]),
        window_file=np.concatenate([p.window_file + o for p, o in zip(parts, offsets)]),
        cry_episode=np.concatenate([p.cry_episode for p in parts]),
    )

