"""The classifier stage: a trained head on embeddings, temporal smoothing, alert hysteresis.

A head artifact is a folder: head.json (what it expects and what it was trained and measured on)
and weights.npz (standardiser + dense layers). The forward pass is numpy so the monitor needs
no deep-learning runtime for it.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.config import AlertSettings, ConfigError
from monitor.messages import NOT_CRY, AlertEnded, AlertStarted, Embedding, Prediction

HEAD_FORMAT = 1
# Alert classes a head trained on public data cannot have: allowed in [alerts] classes (and reported
# as unsupported), where any other name missing from the head is a typo.
CLINICAL_ONLY = ("neurological",)


class HeadError(RuntimeError):
    """A head that cannot be used; the message names the head and the fix."""


@dataclass(frozen=True)
class Head:
    name: str
    embedder_id: str
    dim: int
    classes: tuple[str, ...]
    thresholds: dict[str, float]
    temperature: float
    mean: np.ndarray
    scale: np.ndarray
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (W, b); ReLU between, softmax after
    metadata: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def load(folder: str | Path) -> "Head":
        folder = Path(folder)
        meta_path, weights_path = folder / "head.json", folder / "weights.npz"
        if not meta_path.is_file() or not weights_path.is_file():
            raise HeadError(f"no head at {folder} (needs head.json and weights.npz): "
                            "set [classifier] head, or train one with `python -m train`")
        try:
            meta = json.loads(meta_path.read_text())
            with np.load(weights_path) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise HeadError(f"head {folder} is unreadable ({exc}): retrain or restore it") from exc
        if not isinstance(meta, dict) or meta.get("format") != HEAD_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise HeadError(f"head {folder} has format {found}, this monitor reads {HEAD_FORMAT}")
        try:
            n_layers = sum(1 for k in arrays if k.startswith("W"))
            layers = tuple((arrays[f"W{i}"], arrays[f"b{i}"]) for i in range(n_layers))
            head = Head(
                name=str(meta.get("name", folder.name)), embedder_id=str(meta["embedder_id"]), dim=int(meta["dim"]),
                classes=tuple(str(c) for c in meta["classes"]),
                thresholds={str(k): float(v) for k, v in meta["thresholds"].items()},
                temperature=float(meta.get("temperature", 1.0)), mean=arrays["mean"], scale=arrays["scale"],
                layers=layers, metadata=meta,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HeadError(f"head {folder} is malformed ({exc.__class__.__name__}: {exc}): retrain or restore it") from exc
        head._check(folder)
        return head

    @property
    def alert_thresholds(self) -> dict[str, float]:
        """Per alert class, the threshold `python -m train tune-alerts` chose for alerts (train/detector/alerts.py);
        a class without one alerts at its window threshold."""
        return {str(k): float(v) for k, v in self.metadata.get("alert_thresholds", {}).items()}

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"W{i}"], arrays[f"b{i}"] = w, b
        # Any: numpy's stub also checks ** values against savez's keyword `allow_pickle: bool`.
        named: dict[str, Any] = {k: np.asarray(v, np.float32) for k, v in arrays.items()}
        np.savez(folder / "weights.npz", **named)
        meta = {**self.metadata, "format": HEAD_FORMAT, "name": self.name, "embedder_id": self.embedder_id,
                "dim": self.dim, "classes": list(self.classes), "thresholds": self.thresholds,
                "temperature": self.temperature}
        (folder / "head.json").write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")

    def _check(self, folder: Path) -> None:
        """Shapes and numbers: a head that loads must be able to detect (no NaN, no zero scale)."""
        if NOT_CRY not in self.classes:
            raise HeadError(f"head {folder} has no {NOT_CRY!r} class: retrain it with non-cry examples")
        if len(set(self.classes)) != len(self.classes) or not all(self.classes):
            raise HeadError(f"head {folder} has empty or repeated class names {self.classes}: retrain it")
        arrays = {"mean": self.mean, "scale": self.scale} | {f"W{i}": w for i, (w, _) in enumerate(self.layers)} | {
            f"b{i}": b for i, (_, b) in enumerate(self.layers)}
        for name, array in arrays.items():
            if not np.all(np.isfinite(array)):
                raise HeadError(f"head {folder} has non-finite values in {name}: retrain or restore it")
        if not np.all(self.scale > 0):
            raise HeadError(f"head {folder} has a zero or negative scale: retrain or restore it")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise HeadError(f"head {folder} has temperature {self.temperature}: it must be > 0")
        try:
            alert_thresholds = self.alert_thresholds
        except (AttributeError, TypeError, ValueError) as exc:
            raise HeadError(f"head {folder} has malformed alert_thresholds ({exc}): rerun `python -m train tune-alerts`") \
                from exc
        for label, threshold in {**self.thresholds, **alert_thresholds}.items():
            if label not in self.classes or not 0 <= threshold <= 1:
                raise HeadError(f"head {folder} threshold {label}={threshold}: thresholds are in [0, 1], for its classes")
        width = self.dim
        for w, b in self.layers:
            if w.shape[0] != width or b.shape != (w.shape[1],):
                raise HeadError(f"head {folder} weights do not chain (layer {w.shape} after width {width})")
            width = w.shape[1]
        if width != len(self.classes) or self.mean.shape != (self.dim,):
            raise HeadError(f"head {folder} weights do not match its {len(self.classes)} classes / dim {self.dim}")

    def check_embedder(self, embedder_id: str, dim: int) -> None:
        if embedder_id != self.embedder_id or dim != self.dim:
            raise HeadError(
                f"head {self.name!r} was trained on embedder {self.embedder_id!r} (dim {self.dim}) but the running "
                f"embedder is {embedder_id!r} (dim {dim}): set [classifier] head to a head for {embedder_id!r} "
                f"or [classifier] embedder = {self.embedder_id!r}"
            )

    def predict_proba(self, vectors: np.ndarray) -> np.ndarray:
        z = (np.asarray(vectors, np.float32) - self.mean) / self.scale
        for i, (w, b) in enumerate(self.layers):
            z = z @ w + b
            if i < len(self.layers) - 1:
                z = np.maximum(z, 0.0)
        z = z / self.temperature
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)


class Classifier:
    """Embedding → Prediction with exponential smoothing, plus alert hysteresis per alert class.

    Ungated windows count as certain silence, so smoothed probabilities decay towards not_cry
    and alerts clear on their own when the room goes quiet.
    """

    def __init__(self, head: Head, smoothing: float, alerts: AlertSettings):
        self.head = head
        self.classes = head.classes
        self._not_cry = head.classes.index(NOT_CRY)
        self._alpha = smoothing
        self._smoothed: np.ndarray | None = None
        self._policies = self._policies_for(alerts)
        # Alert classes the head cannot output (e.g. neurological on public data) are reported, not hidden.
        self.unsupported_alert_classes = tuple(c for c in alerts.classes if c not in head.classes)
        self.rejected = 0  # head outputs that were not finite, treated as silence
        self._reloaded: AlertSettings | None = None  # new settings for the stepping thread to take up

    def _policies_for(self, alerts: AlertSettings) -> list[_AlertState]:
        head = self.head
        for label in alerts.thresholds:
            if label not in head.classes:
                raise ConfigError(f"config key alerts.thresholds.{label}: not a class of head {head.name!r} "
                                  f"(classes: {', '.join(head.classes)})")
        for label in alerts.classes:
            if label not in head.classes and label not in CLINICAL_ONLY:
                raise ConfigError(f"config key alerts.classes: {label!r} is not a class of head {head.name!r} "
                                  f"(classes: {', '.join(head.classes)})")
        thresholds = {**head.thresholds, **head.alert_thresholds, **alerts.thresholds}
        return [_AlertState(c, head.classes.index(c), thresholds.get(c, 0.5), alerts.raise_windows, alerts.clear_windows)
                for c in alerts.classes if c in head.classes]

    def reconfigure(self, alerts: AlertSettings) -> None:
        """New alert settings (SIGHUP): checked against the head now (ConfigError), taken up by the
        thread that steps, before its next window, so no window sees half of them."""
        self._policies_for(alerts)
        self._reloaded = alerts

    def _take_up_reload(self, time: int) -> list[AlertEnded]:
        """An alert under way keeps its state; one whose class is no longer alerted on ends."""
        alerts, self._reloaded = self._reloaded, None
        if alerts is None:
            return []
        before = {p.label: p for p in self._policies}
        self._policies = self._policies_for(alerts)
        for policy in self._policies:
            if policy.label in before:
                policy.active, policy.streak = before[policy.label].active, before[policy.label].streak
        self.unsupported_alert_classes = tuple(c for c in alerts.classes if c not in self.head.classes)
        kept = {p.label for p in self._policies}
        return [AlertEnded(time, p.label, 0.0, "no longer an alert class (config reloaded)", None)
                for p in before.values() if p.active and p.label not in kept]

    @property
    def active_alerts(self) -> list[str]:
        return [p.label for p in self._policies if p.active]

    def step(self, embedding: Embedding, raw: np.ndarray | None) -> tuple[Prediction, list[AlertStarted | AlertEnded]]:
        """`raw` is the head's output for this embedding (None when ungated), computed by the caller in batches."""
        if raw is not None and not np.all(np.isfinite(raw)):
            raw = None  # a bad number never enters the smoother: it would stay there for good
            self.rejected += 1
        observed = raw if raw is not None else np.eye(len(self.classes))[self._not_cry]
        if self._smoothed is None:
            self._smoothed = observed.copy()
        else:
            self._smoothed = self._alpha * self._smoothed + (1 - self._alpha) * observed
        prediction = Prediction(embedding.window, self.classes, raw, self._smoothed.copy())
        time = embedding.window.end
        events: list[AlertStarted | AlertEnded] = list(self._take_up_reload(time))
        for policy in self._policies:
            probability = round(float(self._smoothed[policy.index]), 4)
            change = policy.update(probability)
            if change == "raised":
                events.append(AlertStarted(time, policy.label, probability, policy.threshold, None))
            elif change == "cleared":
                events.append(AlertEnded(time, policy.label, probability, "below threshold", None))
        return prediction, events

    def finish(self, time: int) -> list[AlertEnded]:
        """End of input: active alerts end explicitly so none stays open in the log."""
        events = []
        for policy in self._policies:
            if policy.active:
                policy.active, policy.streak = False, 0
                events.append(AlertEnded(time, policy.label, 0.0, "input ended", None))
        return events


@dataclass
class _AlertState:
    label: str
    index: int
    threshold: float
    raise_after: int
    clear_after: int
    active: bool = False
    streak: int = 0  # consecutive windows arguing for a change of state

    def update(self, probability: float) -> str | None:
        arguing = probability < self.threshold if self.active else probability >= self.threshold
        self.streak = self.streak + 1 if arguing else 0
        if self.active and self.streak >= self.clear_after:
            self.active, self.streak = False, 0
            return "cleared"
        if not self.active and self.streak >= self.raise_after:
            self.active, self.streak = True, 0
            return "raised"
        return None
