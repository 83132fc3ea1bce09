"""Alert thresholds chosen on the detector's validation groups (`python -m train tune-alerts`).

A head's own per-class thresholds maximise F1 on single windows; an alert is a different decision
(`[alerts] raise_windows` consecutive smoothed windows at or above the threshold), and the one that
matters is whether a cry-free room ever raises it. For each alert class the head knows, the chosen
threshold is the lowest at which no cry-free validation mixture raises an alert; the report says what
share of that class's clean validation cries still alert (MIN_ALERT_RATE is the target). The monitor
reads it from head.json's `alert_thresholds` (`[alerts] thresholds` still overrides it)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from monitor.analyze import analyze_samples
from monitor.config import Settings
from monitor.messages import WindowScored
from monitor.pipeline import Models

MIN_ALERT_RATE = 0.9
STEP = 0.01


def alert_levels(samples: np.ndarray, settings: Settings, models: Models, labels: tuple[str, ...]) -> dict[str, float]:
    """Per label, the highest threshold at which it would raise an alert on this recording: over every run of
    `raise_windows` consecutive smoothed windows, the largest of their lowest values (one pass for all labels)."""
    events, _summary = analyze_samples(samples, settings, models)
    scored = [e.smoothed for e in events if isinstance(e, WindowScored)]
    k = settings.alerts.raise_windows
    return {label: max((min(w.get(label, 0.0) for w in scored[i:i + k]) for i in range(len(scored) - k + 1)),
                       default=0.0) for label in labels}


@dataclass(frozen=True)
class AlertTuning:
    label: str
    head_threshold: float
    chosen: float
    met: bool  # at `chosen`, at least MIN_ALERT_RATE of the class's validation cries alert
    cry_rate: float  # share of the class's validation cries alerting at `chosen`
    cry_free_alerts_at_head_threshold: int

    def report(self, cries: int, cry_free: int) -> dict[str, Any]:
        return {"label": self.label, "head_threshold": self.head_threshold, "chosen": self.chosen, "met": self.met,
                "validation_cries": cries, "cry_rate": round(self.cry_rate, 3), "cry_free_mixtures": cry_free,
                "cry_free_alerts": 0, "cry_free_alerts_at_head_threshold": self.cry_free_alerts_at_head_threshold}


def choose_threshold(label: str, head_threshold: float, cry_levels: np.ndarray, cry_free_levels: np.ndarray,
                     min_rate: float = MIN_ALERT_RATE) -> AlertTuning:
    """The lowest threshold on a STEP grid above every cry-free level: as many of the class's cries alerting as
    a silent cry-free set allows. `met` says whether that is at least `min_rate` of them."""
    loudest = float(np.max(cry_free_levels, initial=0.0))
    chosen = round(float(min(1.0, (np.floor(loudest / STEP + 1e-9) + 1) * STEP)), 4)
    rate = float(np.mean(cry_levels >= chosen)) if len(cry_levels) else 0.0
    return AlertTuning(label, head_threshold, chosen, rate >= min_rate, rate,
                       int(np.sum(cry_free_levels >= head_threshold)))


def tune_alert_thresholds(settings: Settings, models: Models, cries: dict[str, list[np.ndarray]],
                          cry_free: list[np.ndarray]) -> list[AlertTuning]:
    """One AlertTuning per alert class of the running head; `cries` holds each class's clean validation cries."""
    head = models.head
    labels = tuple(c for c in settings.alerts.classes if c in head.classes)
    free_levels = [alert_levels(s, settings, models, labels) for s in tqdm(cry_free, desc="cry-free mixtures",
                                                                             unit="mixture")]
    tunings = []
    for label in labels:
        cry_levels = [alert_levels(s, settings, models, (label,))[label]
                      for s in tqdm(cries.get(label, []), desc=f"{label} cries", unit="cry")]
        tunings.append(choose_threshold(label, head.thresholds.get(label, 0.5), np.array(cry_levels),
                                        np.array([levels[label] for levels in free_levels])))
    return tunings
