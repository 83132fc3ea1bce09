"""Embedding probes on per-file mean-pooled windows: within-corpus tasks, corpus identity, and the seed
study's protocol beside a grouped one. They measure the embedding, not the shipped head, and are how an
embedder is chosen."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from monitor.messages import NOT_CRY
from train.datasets import Record
from train.heads.cache import FileWindows
from train.heads.evaluate import group_bootstrap_auc
from train.heads.models import classical_models
from train.labels import KeywordMap

FOLDS = 5


@dataclass(frozen=True)
class ProbeTask:
    name: str
    keep: Callable[[Record], bool]
    label: Callable[[Record], str]  # binary: "1"/"0", or a class name


PROBE_TASKS = (
    ProbeTask("esc50_cry_vs_not_cry", lambda r: r.source == "esc50", lambda r: str(int(r.target != NOT_CRY))),
    ProbeTask("corvin_pain_vs_discomfort", lambda r: r.source == "corvin", lambda r: str(int(r.target == "pain"))),
    ProbeTask("donateacry_hungry_vs_rest", lambda r: r.source == "donateacry", lambda r: str(int(r.label == "hungry"))),
    ProbeTask("corpus_identity_of_cries", lambda r: r.target != NOT_CRY, lambda r: r.source),
    ProbeTask("pain_hunger_other_across_corpora", lambda r: r.target != NOT_CRY,
              lambda r: {"pain": "pain", "hunger": "hunger"}.get(r.target, "other")),
)


def pooled(windows: list[FileWindows]) -> np.ndarray:
    """Mean of every window's embedding per file (as in the issue's reference numbers)."""
    return np.stack([w.vectors.mean(axis=0) for w in windows])


def _logistic():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=3000))


def _oof(model, x: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
    classes = np.unique(y)
    out = np.zeros((len(y), len(classes)))
    for train, test in folds:
        fitted = clone(model).fit(x[train], y[train])
        out[np.ix_(test, np.searchsorted(classes, fitted.classes_))] = fitted.predict_proba(x[test])
    return out


def _macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    classes = np.unique(y)
    if len(classes) == 2:
        return float(roc_auc_score(y == classes[1], probs[:, 1]))
    return float(roc_auc_score(y, probs, multi_class="ovr", average="macro"))


def probe_tasks(records: list[Record], x: np.ndarray, seed: int = 0) -> dict:
    out = {}
    for task in PROBE_TASKS:
        idx = np.array([i for i, r in enumerate(records) if task.keep(r)])
        y = np.array([task.label(records[i]) for i in idx])
        groups = np.array([records[i].key for i in idx])
        folds = list(StratifiedGroupKFold(FOLDS, shuffle=True, random_state=seed).split(x[idx], y, groups))
        probs = _oof(_logistic(), x[idx], y, folds)
        entry: dict[str, Any] = {"files": int(len(idx)), "groups": int(len(set(groups))),
                                 "classes": sorted(str(c) for c in set(y))}
        if len(entry["classes"]) == 2:
            entry.update(group_bootstrap_auc(y == "1", probs[:, 1], groups))
        else:
            entry["macro_auc"] = round(_macro_auc(y, probs), 4)
            sources = np.array([records[i].source for i in idx])
            corpus_only = np.stack([sources == s for s in sorted(set(sources))], axis=1).astype(float)
            if task.name != "corpus_identity_of_cries":  # what knowing only the corpus already gives
                entry["corpus_only_macro_auc"] = round(_macro_auc(y, _oof(_logistic(), corpus_only, y, folds)), 4)
        out[task.name] = entry
    return out


def seed_protocol(records: list[Record], x: np.ndarray, seed_map: KeywordMap, seed: int = 0) -> dict:
    """The seed's classical models on its keyword labels, split its way (files, stratified) and ours (groups)."""
    labels = [seed_map(r.source, r.label, r.rel) for r in records]
    idx = np.array([i for i, lab in enumerate(labels) if lab is not None])
    y = np.array([labels[i] for i in idx])
    groups = np.array([records[i].key for i in idx])
    xs = x[idx]
    protocols = {
        "seed_file_split": list(StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(xs, y)),
        "grouped": list(StratifiedGroupKFold(FOLDS, shuffle=True, random_state=seed).split(xs, y, groups)),
    }
    holdouts = {
        "seed_file_split": train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed),
        "grouped": next(iter(protocols["grouped"])),
    }
    out: dict[str, Any] = {"files": int(len(idx)), "classes": {str(c): int((y == c).sum()) for c in sorted(set(y))},
           "majority_accuracy": round(float(max((y == c).mean() for c in set(y))), 4), "models": {}}
    for name, model in classical_models(seed).items():
        # The seed reduced with PCA (95 % variance) before its classical models.
        pipeline = make_pipeline(StandardScaler(), PCA(0.95, random_state=seed), model)
        entry = {}
        for protocol, folds in protocols.items():
            probs = _oof(pipeline, xs, y, folds)
            predicted = np.unique(y)[probs.argmax(axis=1)]
            train, test = holdouts[protocol]
            fitted = clone(pipeline).fit(xs[train], y[train])
            entry[protocol] = {
                "cv_accuracy": round(float((predicted == y).mean()), 4),
                "cv_weighted_f1": round(float(f1_score(y, predicted, average="weighted")), 4),
                "cv_macro_auc": round(_macro_auc(y, probs), 4),
                "holdout_accuracy": round(float((fitted.predict(xs[test]) == y[test]).mean()), 4),
            }
        out["models"][name] = entry
    return out


def probes_markdown(probes: dict) -> list[str]:
    lines = ["## Embedding probes (per-file mean-pooled windows, logistic regression, grouped 5-fold CV)", "",
             "| task | files | groups | AUC [95 % CI] | corpus-only baseline |", "|---|---:|---:|---:|---:|"]
    for name, e in probes["tasks"].items():
        value = (f"{e['auc']:.3f} [{e['ci95'][0]:.3f}, {e['ci95'][1]:.3f}]" if "auc" in e
                 else f"macro {e['macro_auc']:.3f}")
        lines.append(f"| {name} | {e['files']} | {e['groups']} | {value} | {e.get('corpus_only_macro_auc', '—')} |")
    seed = probes.get("seed_protocol")
    if seed:
        lines += ["", f"### The seed study's protocol beside a grouped one ({seed['files']} files the seed's keyword map "
                  f"labels: {seed['classes']}; majority class {seed['majority_accuracy']:.3f})", "",
                  "| model | seed split: CV acc | CV macro AUC | 70/30 holdout acc "
                  "| grouped: CV acc | CV macro AUC | grouped holdout acc |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, m in seed["models"].items():
            s, g = m["seed_file_split"], m["grouped"]
            lines.append(f"| {name} | {s['cv_accuracy']:.3f} | {s['cv_macro_auc']:.3f} | {s['holdout_accuracy']:.3f} | "
                         f"{g['cv_accuracy']:.3f} | {g['cv_macro_auc']:.3f} | {g['holdout_accuracy']:.3f} |")
    return lines + [""]
