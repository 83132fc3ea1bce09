"""Heads (exported to monitor.classify.Head) and the seed study's classical baselines."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

Layers = tuple[tuple[np.ndarray, np.ndarray], ...]


@dataclass(frozen=True)
class Standardiser:
    mean: np.ndarray
    scale: np.ndarray

    @staticmethod
    def fit(x: np.ndarray) -> "Standardiser":
        scale = x.std(axis=0)
        # A constant feature (e.g. a voicing statistic that never fires) must not divide by zero.
        return Standardiser(x.mean(axis=0).astype(np.float32), np.where(scale > 1e-6, scale, 1.0).astype(np.float32))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)


@dataclass(frozen=True)
class FittedHead:
    """What training produced, before calibration: the numbers a Head needs, plus a log."""

    standardiser: Standardiser
    layers: Layers
    info: dict


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    present = np.unique(y)
    weights = np.ones(n_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=y)
    return weights


def fit_logistic(x: np.ndarray, y: np.ndarray, n_classes: int, c: float = 0.1, seed: int = 0) -> FittedHead:
    """Multinomial logistic regression: a one-layer head."""
    standardiser = Standardiser.fit(x)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=seed)
    model.fit(standardiser(x), y)
    w = np.zeros((x.shape[1], n_classes), np.float32)
    b = np.full(n_classes, -30.0, np.float32)  # a class absent from training is never predicted
    w[:, model.classes_] = model.coef_.T
    b[model.classes_] = model.intercept_
    return FittedHead(standardiser, ((w, b),), {"model": "logistic", "C": c})


# ---------------------------------------------------------------------------------------------
# Torch MLP head (the seed's recipe, made to generalise across groups)


@dataclass(frozen=True)
class MLPConfig:
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.3
    input_noise: float = 0.1  # std of Gaussian noise on standardised inputs
    mixup_alpha: float = 0.2  # applied to half the batches, as in the seed
    label_smoothing: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch: int = 128
    max_epochs: int = 80
    patience: int = 12
    seed: int = 0


class MLP(nn.Module):
    """[Linear → BatchNorm → ReLU → Dropout] × k → Linear."""

    def __init__(self, dim: int, n_classes: int, config: MLPConfig):
        super().__init__()
        blocks: list[nn.Module] = []
        width = dim
        for h in config.hidden:
            blocks += [nn.Linear(width, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Dropout(config.dropout)]
            width = h
        self.body = nn.Sequential(*blocks)
        self.out = nn.Linear(width, n_classes)
        self.input_noise = config.input_noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.input_noise > 0:
            x = x + self.input_noise * torch.randn_like(x)
        return self.out(self.body(x))


def _loss_on(model: MLP, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float(nn.functional.cross_entropy(model(x), y, weight=weights))


def train_mlp(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int,
              config: MLPConfig, early_stopping: bool = True) -> tuple[MLP, Standardiser, dict]:
    """AdamW + cosine LR, class weights, label smoothing, mixup, input noise; early stopping on the
    class-weighted validation loss (validation = other groups than training)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP only loses time to thread hand-offs
    try:
        return _train_mlp(x, y, x_val, y_val, n_classes, config, early_stopping)
    finally:
        torch.set_num_threads(threads)


def _train_mlp(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int,
               config: MLPConfig, early_stopping: bool) -> tuple[MLP, Standardiser, dict]:
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    standardiser = Standardiser.fit(x)
    xt, yt = torch.from_numpy(standardiser(x)), torch.from_numpy(y.astype(np.int64))
    xv, yv = torch.from_numpy(standardiser(x_val)), torch.from_numpy(y_val.astype(np.int64))
    weights = torch.tensor(class_weights(y, n_classes), dtype=torch.float32)
    model = MLP(x.shape[1], n_classes, config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.max_epochs * int(np.ceil(len(x) / config.batch))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    criterion = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    best, best_epoch, history = np.inf, 0, []
    best_state: dict[str, torch.Tensor] | None = None
    for epoch in range(config.max_epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), config.batch):
            batch = order[start : start + config.batch]
            if len(batch) < 2:  # BatchNorm needs two samples
                continue
            xb, yb = xt[batch], yt[batch]
            if config.mixup_alpha > 0 and rng.random() < 0.5:
                lam = float(rng.beta(config.mixup_alpha, config.mixup_alpha))
                perm = torch.randperm(len(batch))
                logits = model(lam * xb + (1 - lam) * xb[perm])
                loss = lam * criterion(logits, yb) + (1 - lam) * criterion(logits, yb[perm])
            else:
                loss = criterion(model(xb), yb)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        val_loss = _loss_on(model, xv, yv, weights)
        history.append(round(val_loss, 5))
        if val_loss < best - 1e-4 or not early_stopping:  # without early stopping the last epoch is kept
            best, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= config.patience:
            break
    if best_state is None:  # no epoch ran, or every validation loss was NaN (this used to fail inside load_state_dict)
        raise RuntimeError("MLP training kept no weights: no epochs, or the validation loss was NaN throughout")
    model.load_state_dict(best_state)
    model.eval()
    return model, standardiser, {"best_epoch": best_epoch, "val_loss": round(best, 5), "epochs_run": len(history)}


def export_mlp(model: MLP) -> Layers:
    """Dense layers for numpy inference: each BatchNorm (eval statistics) folded into its Linear."""
    layers = []
    modules = list(model.body)
    for i in range(0, len(modules), 4):
        linear, bn = modules[i], modules[i + 1]
        assert isinstance(linear, nn.Linear) and isinstance(bn, nn.BatchNorm1d)
        assert bn.running_var is not None and bn.running_mean is not None  # MLP's BatchNorms track running stats
        gain = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach()
        w = linear.weight.detach().T * gain
        b = (linear.bias.detach() - bn.running_mean) * gain + bn.bias.detach()
        layers.append((w.numpy().astype(np.float32), b.numpy().astype(np.float32)))
    layers.append((model.out.weight.detach().T.numpy().astype(np.float32), model.out.bias.detach().numpy().astype(np.float32)))
    return tuple(layers)


def fit_mlp(x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, n_classes: int,
            config: MLPConfig = MLPConfig(), early_stopping: bool = True) -> FittedHead:
    model, standardiser, info = train_mlp(x, y, x_val, y_val, n_classes, config, early_stopping)
    return FittedHead(standardiser, export_mlp(model), {"model": "mlp", "hidden": list(config.hidden), **info})


def average_logits(mlp: FittedHead, linear: FittedHead) -> FittedHead:
    """One ReLU network whose logits are the mean of an MLP's and a one-layer head's logits.

    The linear path rides through the hidden layers as (z+, z-) = (ReLU(z), ReLU(-z)), which is exact, so
    the ensemble still fits the Head format (dense layers, ReLU between). Both must share a standardiser.
    """
    assert np.allclose(mlp.standardiser.mean, linear.standardiser.mean) and len(linear.layers) == 1
    (w_lin, b_lin), d = linear.layers[0], len(mlp.standardiser.mean)
    layers = []
    for i, (w, b) in enumerate(mlp.layers[:-1]):
        w = np.hstack([w, np.eye(d), -np.eye(d)]) if i == 0 else _block(w, np.eye(2 * d))
        layers.append((w.astype(np.float32), np.concatenate([b, np.zeros(2 * d)]).astype(np.float32)))
    w_out, b_out = mlp.layers[-1]
    w = np.vstack([0.5 * w_out, 0.5 * w_lin, -0.5 * w_lin]).astype(np.float32)
    layers.append((w, (0.5 * (b_out + b_lin)).astype(np.float32)))
    return FittedHead(mlp.standardiser, tuple(layers), {"model": "ensemble", "mlp": mlp.info, "linear": linear.info,
                                                        "best_epoch": mlp.info.get("best_epoch")})


def _block(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1]))
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0] :, a.shape[1] :] = b
    return out


# ---------------------------------------------------------------------------------------------
# The seed study's classical baselines (on per-file mean-pooled embeddings)


def classical_models(seed: int = 0) -> dict[str, object]:
    # SVC(probability=True) is deprecated in scikit-learn 1.9; this is its documented replacement.
    svm = CalibratedClassifierCV(SVC(C=10, gamma=0.001, class_weight="balanced", random_state=seed), ensemble=False)
    logistic = LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000)
    forest = RandomForestClassifier(n_estimators=300, class_weight="balanced", random_state=seed, n_jobs=-1)
    boosting = GradientBoostingClassifier(random_state=seed)
    voting = VotingClassifier(
        [("svm", svm), ("logistic", logistic), ("forest", forest), ("boosting", boosting)], voting="soft"
    )
    return {"svm_rbf": svm, "logistic": logistic, "random_forest": forest, "gradient_boosting": boosting,
            "soft_voting": voting}
