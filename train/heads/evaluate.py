"""Metrics computed the way the monitor works: the head scores gated windows only, a window the gate
closes is not_cry, and a file's probabilities are the mean over its gated windows."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import confusion_matrix, f1_score

from monitor.classify import Classifier, Head
from monitor.config import AlertSettings, ClassifierSettings
from monitor.messages import NOT_CRY, Embedding, Window
from train.datasets import Record
from train.heads.cache import FileWindows

N_BOOTSTRAP = 1000
# The head's own cry call on its smoothed windows (the monitor's episodes come from the detector).
HEAD_CRY_THRESHOLD = 0.5
ECE_BINS = 15


@dataclass(frozen=True)
class Scored:
    """A head's output on a set of recordings."""

    classes: tuple[str, ...]
    records: list[Record]
    file_probs: np.ndarray  # (files, classes)
    gated_count: np.ndarray  # (files,)
    window_probs: np.ndarray  # (gated windows, classes)
    window_file: np.ndarray  # (gated windows,) index into records
    cry_episode: np.ndarray  # (files,) bool: the smoothed stream opened a cry episode somewhere


def logits_of(head: Head, vectors: np.ndarray) -> np.ndarray:
    """Logits up to a per-row constant (which softmax ignores): log of the T = 1 probabilities."""
    return np.log(np.maximum(replace(head, temperature=1.0).predict_proba(vectors), 1e-30))


def _episode_opened(head: Head, probs: np.ndarray, gated: np.ndarray) -> bool:
    """Replays the monitor's smoother over the file; ungated windows count as not_cry."""
    classifier = Classifier(head, ClassifierSettings().smoothing, AlertSettings())
    not_cry = head.classes.index(NOT_CRY)
    for i, p in enumerate(probs):
        prediction = classifier.step(Embedding(Window(i, 0.0, 0.0), None, head.embedder_id), p if gated[i] else None)
        if 1.0 - prediction.smoothed[not_cry] >= HEAD_CRY_THRESHOLD:
            return True
    return False


def score(head: Head, records: list[Record], windows: list[FileWindows]) -> Scored:
    not_cry = np.eye(len(head.classes))[head.classes.index(NOT_CRY)]
    file_probs, counts, win_probs, win_file, episodes = [], [], [], [], []
    for i, fw in enumerate(windows):
        probs = head.predict_proba(fw.vectors) if len(fw.vectors) else np.zeros((0, len(head.classes)))
        gated = probs[fw.gated]
        file_probs.append(gated.mean(axis=0) if len(gated) else not_cry)
        counts.append(len(gated))
        win_probs.append(gated)
        win_file.append(np.full(len(gated), i))
        episodes.append(_episode_opened(head, probs, fw.gated))
    return Scored(head.classes, records, np.array(file_probs), np.array(counts),
                  np.concatenate(win_probs), np.concatenate(win_file).astype(int), np.array(episodes))


# ---------------------------------------------------------------------------------------------
# Metrics


def auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC by ranks (ties count half); NaN when one side is empty."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def group_bootstrap_auc(positive: np.ndarray, scores: np.ndarray, groups: np.ndarray,
                        n: int = N_BOOTSTRAP, seed: int = 0) -> dict:
    """AUC with a 95 % CI from resampling whole groups (windows of one infant are not independent)."""
    point = auc(positive, scores)
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n):
        take = np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))])
        value = auc(positive[take], scores[take])
        if not np.isnan(value):
            samples.append(value)
    low, high = np.percentile(samples, [2.5, 97.5]) if samples else (np.nan, np.nan)
    return {"auc": _r(point), "ci95": [_r(low), _r(high)], "positives": int(positive.sum()),
            "negatives": int(len(positive) - positive.sum()), "groups": int(len(unique))}


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> tuple[float, list[dict]]:
    """Top-label ECE with equal-width bins, and the reliability diagram's bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece, table = 0.0, []
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap = abs(correct[inside].mean() - confidence[inside].mean())
            ece += inside.mean() * gap
            table.append({"bin": [_r(edges[b]), _r(edges[b + 1])], "count": int(inside.sum()),
                          "confidence": _r(confidence[inside].mean()), "accuracy": _r(correct[inside].mean())})
    return float(ece), table


def classification_metrics(probs: np.ndarray, y: np.ndarray, groups: np.ndarray, classes: tuple[str, ...]) -> dict:
    predicted = probs.argmax(axis=1)
    present = [c for c in range(len(classes)) if (y == c).any()]
    recalls = [float((predicted[y == c] == c).mean()) for c in present]
    ece, reliability = expected_calibration_error(probs, y)
    return {
        "n": int(len(y)),
        "accuracy": _r(float((predicted == y).mean())),
        "weighted_f1": _r(f1_score(y, predicted, labels=present, average="weighted", zero_division=0)),
        "uar": _r(float(np.mean(recalls))),
        "ece": _r(ece),
        "per_class": {
            classes[c]: {"support": int((y == c).sum()), "recall": _r(r),
                         **group_bootstrap_auc(y == c, probs[:, c], groups)}
            for c, r in zip(present, recalls)
        },
        "confusion": {"classes": list(classes),
                      "matrix": confusion_matrix(y, predicted, labels=range(len(classes))).tolist()},
        "reliability": reliability,
    }


# ---------------------------------------------------------------------------------------------
# Tasks that expose confounds: within one corpus, where corpus identity cannot help


@dataclass(frozen=True)
class Task:
    name: str
    source: str
    positive: str  # a class name, or "label:<dataset label>"
    score: str  # "cry" (1 - p(not_cry)) or a class name
    what: str


TASKS = (
    Task("esc50_cry_vs_not_cry", "esc50", "cry", "cry", "crying_baby vs 40 other ESC-50 sound classes"),
    Task("corvin_pain_vs_discomfort", "corvin", "pain", "pain", "vaccination vs bath cries of the same babies, by p(pain)"),
    Task("donateacry_hunger_vs_rest", "donateacry", "hunger", "hunger", "parents' 'hungry' vs their other reasons, by p(hunger)"),
    Task("donateacry_belly_pain_by_pain_score", "donateacry", "label:belly_pain", "pain",
         "does p(pain) rank parents' 'belly pain' above their other reasons? (corpus-transfer check)"),
)


def _task_arrays(task: Task, records: list[Record], probs: np.ndarray, classes: tuple[str, ...]):
    keep = np.array([r.source == task.source for r in records])
    chosen = [r for r, k in zip(records, keep) if k]
    if task.positive == "cry":
        positive = np.array([r.target != NOT_CRY for r in chosen])
    elif task.positive.startswith("label:"):
        positive = np.array([r.label == task.positive.split(":", 1)[1] for r in chosen])
    else:
        positive = np.array([r.target == task.positive for r in chosen])
    if task.score == "cry":
        scores = 1.0 - probs[keep][:, classes.index(NOT_CRY)]
    elif task.score in classes:
        scores = probs[keep][:, classes.index(task.score)]
    else:
        return None
    return positive, scores, np.array([r.key for r in chosen])


def task_metrics(scored: Scored) -> dict:
    out = {}
    window_records = [scored.records[i] for i in scored.window_file]
    for task in TASKS:
        entry: dict[str, Any] = {"what": task.what}
        for level, records, probs in (("file", scored.records, scored.file_probs),
                                      ("window", window_records, scored.window_probs)):
            arrays = _task_arrays(task, records, probs, scored.classes)
            if arrays is not None and arrays[0].any() and not arrays[0].all():
                entry[level] = group_bootstrap_auc(*arrays)
        if len(entry) > 1:
            out[task.name] = entry
    return out


def false_episodes(scored: Scored) -> dict:
    """Non-cry recordings on which the monitor's smoothed stream would open a cry episode."""
    out = {}
    for source in sorted({r.source for r in scored.records if r.target == NOT_CRY}):
        idx = [i for i, r in enumerate(scored.records) if r.target == NOT_CRY and r.source == source]
        hits = [scored.records[i] for i in idx if scored.cry_episode[i]]
        gated = int(sum(scored.gated_count[i] > 0 for i in idx))
        out[source] = {"files": len(idx), "files_with_gated_window": gated, "files_with_cry_episode": len(hits),
                       "by_label": dict(Counter(r.label for r in hits).most_common()),
                       "examples": [r.rel for r in hits[:10]]}
    return out


def gate_coverage(scored: Scored) -> dict:
    """How many cry recordings the gate lets the head hear at all."""
    out = {}
    for target in sorted({r.target for r in scored.records}):
        idx = [i for i, r in enumerate(scored.records) if r.target == target]
        out[target] = {"files": len(idx), "files_gated": int(sum(scored.gated_count[i] > 0 for i in idx)),
                       "gated_windows": int(sum(scored.gated_count[i] for i in idx))}
    return out


def evaluate(scored: Scored) -> dict:
    """Everything the report shows, on the recordings whose class the head knows."""
    index = {c: i for i, c in enumerate(scored.classes)}
    known = np.array([r.target in index for r in scored.records])
    y_file = np.array([index.get(r.target, -1) for r in scored.records])
    groups = np.array([r.key for r in scored.records])
    y_window = y_file[scored.window_file]
    known_windows = known[scored.window_file]
    return {
        "file": classification_metrics(scored.file_probs[known], y_file[known], groups[known], scored.classes),
        "window": classification_metrics(scored.window_probs[known_windows], y_window[known_windows],
                                         groups[scored.window_file][known_windows], scored.classes),
        "tasks": task_metrics(scored),
        "false_cry_episodes": false_episodes(scored),
        "gate": gate_coverage(scored),
        "unknown_class_files": int((~known).sum()),
    }


def _r(value: float) -> float:
    return round(float(value), 4)
