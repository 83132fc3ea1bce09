"""Temperature scaling and alert thresholds, both chosen on validation groups (never on test)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T in softmax(logits / T) that minimises NLL; T = 1 is kept unless it is beaten."""
    result = minimize_scalar(lambda log_t: nll(logits, y, float(np.exp(log_t))), bounds=(-3.0, 3.0), method="bounded")
    best = float(np.exp(result.x))
    return best if nll(logits, y, best) < nll(logits, y, 1.0) else 1.0


def f1_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """Threshold that maximises F1 of `score >= threshold`; 0.5 when there are no positives to learn from."""
    if positive.sum() == 0 or positive.all():
        return 0.5
    order = np.argsort(-scores)
    hits = np.cumsum(positive[order])
    precision = hits / np.arange(1, len(scores) + 1)
    recall = hits / positive.sum()
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = int(np.argmax(f1))
    # Midway to the next score, so a tiny drift in probabilities does not flip the decision.
    below = scores[order[best + 1]] if best + 1 < len(scores) else scores[order[best]] / 2
    return float(np.clip((scores[order[best]] + below) / 2, 0.01, 0.99))
