"""Head export and calibration."""
from __future__ import annotations

import numpy as np
import torch

from monitor.classify import Head
from train.heads.calibrate import fit_temperature, nll
from train.heads.models import FittedHead, MLPConfig, average_logits, export_mlp, fit_logistic, train_mlp


def _blobs(n: int, seed: int, classes: int = 3, dim: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(scale=1.5, size=(classes, dim))
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(size=(n, dim)) + 5.0).astype(np.float32), y


def test_exported_head_matches_the_torch_model(tmp_path):
    x, y = _blobs(600, 0)
    xv, yv = _blobs(200, 1)
    config = MLPConfig(hidden=(32, 16), max_epochs=15, patience=15)
    model, standardiser, _ = train_mlp(x, y, xv, yv, 3, config)
    # BatchNorm running statistics must be non-trivial for the folding to be tested.
    assert not torch.allclose(model.body[1].running_mean, torch.zeros(32))
    head = Head("t", "test", x.shape[1], ("not_cry", "pain", "hunger"), {}, 1.0,
                standardiser.mean, standardiser.scale, export_mlp(model))
    head.save(tmp_path)
    loaded = Head.load(tmp_path)
    xt, _ = _blobs(300, 2)
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(standardiser(xt))), dim=1).numpy()
    np.testing.assert_allclose(loaded.predict_proba(xt), expected, atol=1e-5)


def test_exported_logistic_matches_sklearn_probabilities():
    x, y = _blobs(400, 3)
    fitted = fit_logistic(x, y, 3, c=1.0)
    head = Head("t", "test", x.shape[1], ("not_cry", "a", "b"), {}, 1.0, fitted.standardiser.mean,
                fitted.standardiser.scale, fitted.layers)
    from sklearn.linear_model import LogisticRegression

    reference = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000, random_state=0)
    reference.fit(fitted.standardiser(x), y)
    np.testing.assert_allclose(head.predict_proba(x), reference.predict_proba(fitted.standardiser(x)), atol=1e-5)


def test_temperature_scaling_does_not_raise_held_out_nll():
    x, y = _blobs(300, 4)
    fitted = fit_logistic(x, y, 3, c=100.0)  # weakly regularised: overconfident
    w, b = fitted.layers[0]

    def logits(data):
        return fitted.standardiser(data) @ w * 3.0 + b * 3.0  # sharpen further

    xv, yv = _blobs(300, 5)
    xt, yt = _blobs(1000, 6)
    temperature = fit_temperature(logits(xv), yv)
    assert temperature > 1.0
    assert nll(logits(xv), yv, temperature) <= nll(logits(xv), yv)
    assert nll(logits(xt), yt, temperature) <= nll(logits(xt), yt)


def test_temperature_one_is_kept_when_it_is_best():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 4000)
    p = np.where(y == 1, 0.7, 0.3)  # calibrated 70 % confidence
    flip = rng.random(4000) > 0.7
    y = np.where(flip, 1 - y, y)
    logits = np.stack([np.log(1 - p), np.log(p)], axis=1)
    assert abs(fit_temperature(logits, y) - 1.0) < 0.1


def test_ensemble_export_averages_the_logits_of_both_heads():
    x, y = _blobs(500, 8)
    xv, yv = _blobs(200, 9)
    model, standardiser, info = train_mlp(x, y, xv, yv, 3, MLPConfig(hidden=(16, 8), max_epochs=5, patience=5))
    mlp = FittedHead(standardiser, export_mlp(model), info)
    linear = fit_logistic(x, y, 3, c=1.0)
    both = average_logits(mlp, linear)
    head = Head("t", "test", x.shape[1], ("not_cry", "a", "b"), {}, 1.0, standardiser.mean, standardiser.scale,
                both.layers)
    z = standardiser(x)
    with torch.no_grad():
        mlp_logits = model(torch.from_numpy(z)).numpy()
    w, b = linear.layers[0]
    expected = torch.softmax(torch.from_numpy(0.5 * (mlp_logits + z @ w + b)), dim=1).numpy()
    np.testing.assert_allclose(head.predict_proba(x), expected, atol=1e-5)
