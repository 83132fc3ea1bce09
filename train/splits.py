"""Splits by group only, and the leakage check every run passes through."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from train.datasets import Record


class LeakageError(RuntimeError):
    """The same group or the same waveform on both sides of a split."""


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # record indices
    test: np.ndarray


def strata(records: list[Record]) -> np.ndarray:
    """Stratify by source and class so every corpus and class appears on both sides."""
    return np.array([f"{r.source}:{r.target}" for r in records])


def grouped_folds(records: list[Record], n_splits: int, seed: int) -> list[Split]:
    groups = np.array([r.split_key for r in records])
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return [Split(np.sort(tr), np.sort(te)) for tr, te in folds.split(np.zeros(len(records)), strata(records), groups)]


def grouped_holdout(records: list[Record], test_fraction: float, seed: int) -> Split:
    """One fold of a StratifiedGroupKFold with round(1 / test_fraction) folds."""
    return grouped_folds(records, max(2, round(1 / test_fraction)), seed)[0]


def subset(records: list[Record], indices: np.ndarray) -> list[Record]:
    return [records[i] for i in indices]


def check_leakage(records: list[Record], split: Split, wave_sha1: list[str] | None = None) -> None:
    """Raise if a group (Record.split_key: across collections), or an identical waveform (under any group or
    name), is on both sides."""
    train_groups = {records[i].split_key for i in split.train}
    shared = train_groups & {records[i].split_key for i in split.test}
    if shared:
        # Named as the sources name them (esc50/123 and us8k/123 are one Freesound recording)
        names = sorted({records[i].key for i in (*split.train, *split.test) if records[i].split_key in shared})
        raise LeakageError(f"group(s) {', '.join(names[:5])} on both sides of the split: split by group only")
    if wave_sha1 is not None:
        sides: dict[str, set[str]] = defaultdict(set)
        for side, indices in (("train", split.train), ("test", split.test)):
            for i in indices:
                sides[wave_sha1[i]].add(side)
        dupes = [h for h, s in sides.items() if len(s) == 2]
        if dupes:
            names = [records[i].rel for i in split.test if wave_sha1[i] in set(dupes)]
            raise LeakageError(
                f"identical audio on both sides of the split ({', '.join(names[:5])}): "
                "give duplicates one group or remove them from the index"
            )
    overlap = set(split.train.tolist()) & set(split.test.tolist())
    if overlap:
        raise LeakageError(f"{len(overlap)} recording(s) on both sides of the split")
