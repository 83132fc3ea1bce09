"""The classifier stage: a trained head on embeddings, temporal smoothing, and each window's evidence
for the alert classes (which a crying spell accumulates: monitor/spells/).

A head artifact is a folder: head.json (what it expects and what it was trained and measured on)
and weights.npz (standardiser + dense layers, and any dedicated evidence model). The forward pass
is numpy so the monitor needs no deep-learning runtime for it.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.config import AlertSettings, ConfigError
from monitor.messages import NOT_CRY, Embedding, Prediction
from monitor.spells import EvidenceRule, logit

HEAD_FORMAT = 1
# Alert classes a head trained on public data cannot have: allowed in [alerts] classes (and reported
# as unsupported), where any other name missing from the head is a typo.
CLINICAL_ONLY = ("neurological",)
DEFAULT_MIN_WINDOWS = 3  # crying windows before a head without a tuned number decides a spell's type
CRYING_BELOW = 0.5  # a window is crying when the head's raw not_cry probability is below this


class HeadError(RuntimeError):
    """A head that cannot be used; the message names the head and the fix."""


@dataclass(frozen=True)
class EvidenceModel:
    """A dedicated binary model for one alert class among crying windows (e.g. pain against discomfort):
    standardiser, logistic weights and a temperature, giving calibrated log-odds per window."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    temperature: float

    def log_odds(self, vectors: np.ndarray) -> np.ndarray:
        return ((np.asarray(vectors, np.float32) - self.mean) / self.scale @ self.weights + self.bias) / self.temperature

    def arrays(self, label: str) -> dict[str, np.ndarray]:
        return {f"evidence_{label}_{k}": np.asarray(v, np.float32) for k, v in (
            ("mean", self.mean), ("scale", self.scale), ("weights", self.weights), ("bias", [self.bias]),
            ("temperature", [self.temperature]))}

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], label: str) -> "EvidenceModel":
        def get(name: str) -> np.ndarray:
            return arrays[f"evidence_{label}_{name}"]
        return EvidenceModel(get("mean"), get("scale"), get("weights"), float(get("bias")[0]),
                             float(get("temperature")[0]))


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
    # Per alert class, a dedicated evidence model (head.json "spell_evidence" says how its spells decide);
    # a class without one takes its evidence from the head's own probabilities.
    evidence: dict[str, EvidenceModel] = field(default_factory=dict)

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
                evidence={str(label): EvidenceModel.from_arrays(arrays, str(label))
                          for label, rule in meta.get("spell_evidence", {}).items() if rule.get("model")},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise HeadError(f"head {folder} is malformed ({exc.__class__.__name__}: {exc}): retrain or restore it") from exc
        head._check(folder)
        return head

    @property
    def spell_evidence(self) -> dict[str, dict[str, Any]]:
        """Per alert class, how its spells decide (threshold, min_windows; model: a dedicated evidence model),
        as `python -m train fit-evidence` tuned it on validation spells."""
        return {str(k): dict(v) for k, v in self.metadata.get("spell_evidence", {}).items()}

    def window_evidence(self, vectors: np.ndarray, raw: np.ndarray, labels: tuple[str, ...]) -> list[dict[str, float]]:
        """Per window, its evidence (log-odds) for each of `labels` the head has, only where the head calls the
        window crying. With an evidence model (e.g. pain against discomfort), its log-odds, lowered where the head
        doubts the window is one of the two at all (a hungry phone cry is neither: the model never learned it);
        without one, the head's share of the label among cries."""
        crying = self.crying(raw)
        out: list[dict[str, float]] = [{} for _ in range(len(raw))]
        if not crying.any():
            return out
        for label in (c for c in labels if c in self.classes):
            model = self.evidence.get(label)
            if model is not None:
                against = tuple(self.spell_evidence[label].get("against", ()))
                z = model.log_odds(vectors[crying]) + self.doubt(raw[crying], label, against)
            else:
                z = logit(raw[crying, self.classes.index(label)] / (1 - raw[crying, self.classes.index(NOT_CRY)]))
            for i, value in zip(np.flatnonzero(crying), z):
                if np.isfinite(value):
                    out[i][label] = round(float(value), 4)
        return out

    def crying(self, raw: np.ndarray) -> np.ndarray:
        """Which windows the head calls crying: those whose raw not_cry probability is under CRYING_BELOW."""
        return raw[:, self.classes.index(NOT_CRY)] < CRYING_BELOW

    def doubt(self, raw: np.ndarray, label: str, against: tuple[str, ...]) -> np.ndarray:
        """What an evidence model's log-odds lose per window: nothing where the head calls the window `label` or one
        of `against`, more the more it doubts it is either (the log-odds of their share among cries, capped at 0).
        `python -m train fit-evidence` calibrates with the same term."""
        among = [self.classes.index(c) for c in (label, *against)]
        return np.minimum(0.0, logit(raw[:, among].sum(axis=1) / (1 - raw[:, self.classes.index(NOT_CRY)])))

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"mean": self.mean, "scale": self.scale}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"W{i}"], arrays[f"b{i}"] = w, b
        for label, model in self.evidence.items():
            arrays |= model.arrays(label)
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
        for label, threshold in self.thresholds.items():
            if label not in self.classes or not 0 <= threshold <= 1:
                raise HeadError(f"head {folder} threshold {label}={threshold}: thresholds are in [0, 1], for its classes")
        try:
            rules = {label: (float(rule["threshold"]), int(rule["min_windows"]), float(rule.get("margin", 0.0)),
                             [str(c) for c in rule.get("against", [])]) for label, rule in self.spell_evidence.items()}
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise HeadError(f"head {folder} has malformed spell_evidence ({exc}): rerun `python -m train fit-evidence`") \
                from exc
        for label, (threshold, min_windows, margin, against) in rules.items():
            if {label, *against} - set(self.classes) or not 0 < threshold < 1 or not 1 <= min_windows <= 30 \
                    or not 0 <= margin <= 10:
                raise HeadError(f"head {folder} spell_evidence {label}: threshold {threshold} must be in (0, 1), "
                                f"min_windows {min_windows} in 1..30 and margin {margin} in 0..10, for classes of the "
                                f"head (against {against})")
        for label, model in self.evidence.items():
            shapes = {"mean": model.mean.shape, "scale": model.scale.shape, "weights": model.weights.shape}
            if any(shape != (self.dim,) for shape in shapes.values()) or not all(
                    np.all(np.isfinite(a)) for a in (model.mean, model.scale, model.weights, [model.bias])) \
                    or not np.all(model.scale > 0) or not model.temperature > 0:
                raise HeadError(f"head {folder} evidence model for {label} is malformed ({shapes}, temperature "
                                f"{model.temperature}): rerun `python -m train fit-evidence`")
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


def evidence_rules(head: Head, alerts: AlertSettings) -> dict[str, EvidenceRule]:
    """How each alert class the head can type is decided on a spell: [alerts] overrides, else the head's tuned
    rule. A config naming a class the head lacks is refused (a typo), except the clinical-only ones."""
    for label in alerts.thresholds:
        if label not in head.classes:
            raise ConfigError(f"config key alerts.thresholds.{label}: not a class of head {head.name!r} "
                              f"(classes: {', '.join(head.classes)})")
    for label in alerts.classes:
        if label not in head.classes and label not in CLINICAL_ONLY:
            raise ConfigError(f"config key alerts.classes: {label!r} is not a class of head {head.name!r} "
                              f"(classes: {', '.join(head.classes)})")
    tuned = head.spell_evidence
    return {c: EvidenceRule(alerts.thresholds.get(c, float(tuned.get(c, {}).get("threshold", 0.5))),
                            alerts.min_windows or int(tuned.get(c, {}).get("min_windows", DEFAULT_MIN_WINDOWS)),
                            float(tuned.get(c, {}).get("margin", 0.0)))
            for c in alerts.classes if c in head.classes}


class Classifier:
    """Embedding → Prediction with exponential smoothing (what the dashboard shows); each crying window
    carries its evidence for the alert classes, which the spell it belongs to accumulates.

    Ungated windows count as certain silence, so smoothed probabilities decay towards not_cry.
    """

    def __init__(self, head: Head, smoothing: float, alerts: AlertSettings):
        self.head = head
        self.classes = head.classes
        self._not_cry = head.classes.index(NOT_CRY)
        self._alpha = smoothing
        self._smoothed: np.ndarray | None = None
        self.rules = evidence_rules(head, alerts)
        # Alert classes the head cannot output (e.g. neurological on public data) are reported, not hidden.
        self.unsupported_alert_classes = tuple(c for c in alerts.classes if c not in head.classes)
        self.rejected = 0  # head outputs that were not finite, treated as silence

    def reconfigure(self, alerts: AlertSettings) -> dict[str, EvidenceRule]:
        """New alert settings (SIGHUP), checked against the head (ConfigError): the rules the spells take up."""
        self.rules = evidence_rules(self.head, alerts)
        self.unsupported_alert_classes = tuple(c for c in alerts.classes if c not in self.head.classes)
        return self.rules

    def step(self, embedding: Embedding, raw: np.ndarray | None, evidence: dict[str, float] | None = None) -> Prediction:
        """`raw` is the head's output for this embedding (None when ungated) and `evidence` the window's evidence
        for the alert classes (Head.window_evidence), both computed by the caller in batches."""
        if raw is not None and not np.all(np.isfinite(raw)):
            raw = None  # a bad number never enters the smoother: it would stay there for good
            self.rejected += 1
        observed = raw if raw is not None else np.eye(len(self.classes))[self._not_cry]
        if self._smoothed is None:
            self._smoothed = observed.copy()
        else:
            self._smoothed = self._alpha * self._smoothed + (1 - self._alpha) * observed
        kept = {c: z for c, z in (evidence or {}).items() if c in self.rules} if raw is not None else {}
        return Prediction(embedding.window, self.classes, raw, self._smoothed.copy(), kept)
