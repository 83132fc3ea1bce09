"""`python -m train detector`: train the frame-level cry detector on mixtures made on the fly.

Training groups give the examples (cries in everyday and synthesised NICU backgrounds, with
augmentation), validation groups choose the epoch and the run decision (hysteresis thresholds
and minimum duration, scored as episodes the way the benchmark scores them), and test groups
are never seen here: `python -m train evaluate-events` scores the result on them.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from tqdm import tqdm

from monitor.audio import load_audio
from monitor.detect import Decision, DetectorModel, FeatureSettings
from monitor.detect.crnn import Architecture, LogMel, band_pools, pad_for_training
from monitor.detect.frames import frame_time
from monitor.detect.gate import decide_runs
from monitor.messages import SAMPLE_RATE
from train.datasets import Record
from train.detector.mixing import HARD_KINDS, ClipCache, TrainingMixer, active_rms, db_gain, room_noise

_LOGGER = logging.getLogger("train.detector")  # its lines' name, as before the package
_CHUNK = 50  # examples per job: one job = one mixer seed
HARD_THRESHOLD = 0.5  # a negative clip the detector scores this high somewhere is a hard negative
ONSET_BEFORE, ONSET_AFTER = 10, 50  # frames (0.2 s before, 1 s after) weighted by DetectorConfig.onset_weight


class CryCRNN(nn.Module):
    """(batch, frames, n_mels) log-mel → (batch, frames - 2 * CONV_LOOKAHEAD) cry logits.

    The torch twin of monitor.detect.crnn.CRNNForward, which runs these weights by their names.
    Output j is the GRU's step for input frame j + CONV_LOOKAHEAD (the convolutions are valid in
    time), trained to score frame j + CONV_LOOKAHEAD - delay_frames; inputs are normalised by
    per-band statistics of the training data, stored with the weights.
    """

    band_mean: torch.Tensor  # registered buffers, declared for the type checker
    band_std: torch.Tensor

    def __init__(self, n_mels: int, arch: Architecture):
        super().__init__()
        self.register_buffer("band_mean", torch.zeros(n_mels))
        self.register_buffer("band_std", torch.ones(n_mels))
        blocks: list[nn.Module] = []
        width, bands = 1, n_mels
        for channels, pool in zip(arch.channels, band_pools(n_mels)):
            # Pool frequency only: time resolution stays one output per input frame.
            blocks += [nn.Conv2d(width, channels, 3, padding=(0, 1)), nn.BatchNorm2d(channels), nn.ReLU(),
                       nn.MaxPool2d((1, pool))]
            width, bands = channels, bands // pool
        self.conv = nn.Sequential(*blocks)
        self.gru = nn.GRU(width * bands, arch.hidden, batch_first=True)
        self.out = nn.Linear(arch.hidden, 1)

    def forward(self, features: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = (features - self.band_mean) / self.band_std
        x = self.conv(x.unsqueeze(1))  # (B, C, T', bands)
        x = x.permute(0, 2, 1, 3).flatten(2)  # (B, T', C * bands)
        x, state = self.gru(x, state)
        return self.out(x).squeeze(-1), state


def exported(network: CryCRNN) -> dict[str, np.ndarray]:
    """The state dict as numpy arrays, for DetectorModel (BatchNorm's step counter is not a weight)."""
    return {k: v.detach().numpy().astype(np.float32) for k, v in network.state_dict().items()
            if not k.endswith("num_batches_tracked")}


@dataclass(frozen=True)
class DetectorConfig:
    seconds: float = 8.0  # length of one training example
    train_examples: int = 6000  # drawn once per run (mixing costs more than a training step here)
    val_examples: int = 600
    epochs: int = 20
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    spec_masks: bool = True  # SpecAugment-style band and time masks
    seed: int = 0
    architecture: Architecture = Architecture()
    p_hard: float = 0.0  # share of examples with one mined hard negative (needs a detector to mine with)
    p_late: float = 0.0  # share of cries placed anywhere, their tails cut (TrainingMixer)
    onset_weight: float = 1.0  # loss weight of the frames around each cry onset (the benchmark scores onsets)
    hard_backgrounds: bool = False  # the second collection's non-cries and HARD_KINDS in backgrounds (--hard mixtures)


@dataclass(frozen=True)
class Bank:
    """Examples as the detector sees them: log-mel frames and a cry target per frame."""

    features: np.ndarray  # (n, frames, n_mels) float32
    targets: np.ndarray  # (n, frames) float32 in [0, 1]


def frame_targets(labels: np.ndarray, n_frames: int) -> np.ndarray:
    """Label hops → detector frames: frame i's window spans label hops i and i + 1 (equal halves)."""
    padded = np.concatenate([labels, labels[-1:]])
    return (0.5 * (padded[:n_frames] + padded[1 : n_frames + 1])).astype(np.float32)


def onset_weights(targets: np.ndarray, weight: float) -> np.ndarray:
    """Per-frame loss weights: `weight` from ONSET_BEFORE frames before each cry onset to ONSET_AFTER after it."""
    weights = np.ones_like(targets)
    if weight == 1.0:
        return weights
    active = targets >= 0.5
    rising = np.argwhere(active[:, 1:] & ~active[:, :-1]) + [0, 1]
    for row, frame in rising:
        weights[row, max(0, frame - ONSET_BEFORE): frame + ONSET_AFTER] = weight
    return weights


def _make_chunk(job: tuple[list[Record], list[Record], int, int, float, list[Record], float, float, list[Record],
                           tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray]:
    cries, negatives, seed, count, seconds, hard, p_hard, p_late, extra_negatives, extra_kinds = job
    mixer = TrainingMixer(cries, negatives, seed=seed, hard=hard, p_hard=p_hard, p_late=p_late,
                          extra_negatives=extra_negatives, extra_kinds=extra_kinds)
    logmel = LogMel(FeatureSettings())
    feats, targets = [], []
    for _ in range(count):
        samples, labels = mixer.example(seconds)
        f = logmel(samples)
        feats.append(f)
        targets.append(frame_targets(labels, len(f)))
    return np.stack(feats), np.stack(targets)


def build_bank(cries: list[Record], negatives: list[Record], count: int, seconds: float, seed: int,
               workers: int, desc: str, hard: list[Record] | None = None, p_hard: float = 0.0,
               p_late: float = 0.0, extra_negatives: list[Record] | None = None,
               extra_kinds: tuple[str, ...] = ()) -> Bank:
    """`count` examples, deterministic for a seed whatever the number of workers."""
    jobs = [(cries, negatives, seed * 100_003 + i, min(_CHUNK, count - i * _CHUNK), seconds, hard or [], p_hard,
             p_late, extra_negatives or [], extra_kinds)
            for i in range(-(-count // _CHUNK))]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        parts = list(tqdm(pool.map(_make_chunk, jobs), total=len(jobs), desc=desc, unit="chunk"))
    return Bank(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def _masked(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One random band mask (up to 8 mel bands) and one time mask (up to 0.4 s) per example."""
    x = x.clone()
    n, frames, bands = x.shape
    fill = x.mean()
    for i in range(n):
        width = int(torch.randint(0, 9, (1,), generator=generator))
        lo = int(torch.randint(0, bands - width + 1, (1,), generator=generator))
        x[i, :, lo : lo + width] = fill
        width = int(torch.randint(0, 21, (1,), generator=generator))
        lo = int(torch.randint(0, frames - width + 1, (1,), generator=generator))
        x[i, lo : lo + width, :] = fill
    return x


def frame_logits(network: CryCRNN, features: np.ndarray, arch: Architecture) -> torch.Tensor:
    """(batch, frames, n_mels) → (batch, frames) logits, aligned with the frames as when streaming."""
    x = torch.from_numpy(np.stack([pad_for_training(f, arch) for f in features]))
    return network(x)[0][:, arch.delay_frames:]


def _predict(network: CryCRNN, features: np.ndarray, arch: Architecture, batch: int = 64) -> np.ndarray:
    network.eval()
    with torch.inference_mode():
        return np.concatenate([torch.sigmoid(frame_logits(network, features[start : start + batch], arch)).numpy()
                               for start in range(0, len(features), batch)])


def train_network(train: Bank, val: Bank, config: DetectorConfig,
                  initial: dict[str, np.ndarray] | None = None) -> tuple[CryCRNN, dict[str, Any]]:
    """Adam with a one-cycle schedule; the epoch with the best validation frame loss is kept.

    `initial` (a detector's weights) continues its training, band statistics included.
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    n_mels = train.features.shape[2]
    network = CryCRNN(n_mels, config.architecture)
    if initial is not None:
        # BatchNorm's step counters are not exported; the weights and statistics are.
        missing, unexpected = network.load_state_dict({k: torch.from_numpy(v) for k, v in initial.items()}, strict=False)
        if unexpected or any(not k.endswith("num_batches_tracked") for k in missing):
            raise ValueError(f"the initial detector does not fit this architecture (missing {missing}, extra {unexpected})")
    else:
        flat = train.features.reshape(-1, n_mels)
        network.band_mean.copy_(torch.from_numpy(flat.mean(axis=0)))
        network.band_std.copy_(torch.from_numpy(np.maximum(flat.std(axis=0), 1e-3)))
    steps = config.epochs * -(-len(train.features) // config.batch)
    optimiser = torch.optim.AdamW(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.lr, total_steps=steps)
    loss_fn = nn.BCEWithLogitsLoss()
    weights = onset_weights(train.targets, config.onset_weight)
    val_truth = val.targets.ravel() >= 0.5
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    history = []
    for epoch in range(config.epochs):
        network.train()
        order = torch.randperm(len(train.features), generator=generator).numpy()
        losses = []
        bar = tqdm(range(0, len(order), config.batch), desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch",
                   leave=False)
        for start in bar:
            idx = order[start : start + config.batch]
            x = torch.from_numpy(np.stack([pad_for_training(f, config.architecture) for f in train.features[idx]]))
            if config.spec_masks:
                x = _masked(x, generator)
            logits = network(x)[0][:, config.architecture.delay_frames:]
            loss = nn.functional.binary_cross_entropy_with_logits(
                logits, torch.from_numpy(train.targets[idx]), weight=torch.from_numpy(weights[idx]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        probs = _predict(network, val.features, config.architecture)
        val_loss = float(loss_fn(torch.logit(torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6)),
                                 torch.from_numpy(val.targets)))
        auc = float(roc_auc_score(val_truth, probs.ravel()))
        history.append({"epoch": epoch + 1, "train_loss": round(float(np.mean(losses)), 4),
                        "val_loss": round(val_loss, 4), "val_frame_auc": round(auc, 4)})
        _LOGGER.info("epoch %d: train loss %.4f, val loss %.4f, val frame AUC %.4f", epoch + 1, np.mean(losses),
                     val_loss, auc)
        if best is None or val_loss < best[0]:
            best = (val_loss, {k: v.clone() for k, v in network.state_dict().items()})
    assert best is not None
    network.load_state_dict(best[1])
    network.eval()
    return network, {"history": history, "best_val_loss": round(best[0], 4)}


# ---------------------------------------------------------------------------------------------
# Decision tuning on validation mixtures, scored as episodes


@dataclass(frozen=True)
class TuningMixture:
    samples: np.ndarray
    onset_s: float | None  # the reference cry onset; None for a cry-free mixture


def track(model: DetectorModel, samples: np.ndarray) -> np.ndarray:
    """The streaming detector's probabilities over a whole recording."""
    stream = model.stream()
    return np.concatenate([stream.push(samples), stream.flush()])


def episode_onsets(probs: np.ndarray, decision: Decision, quiet_s: float, features: FeatureSettings) -> list[float]:
    """Episode start times (s) as the monitor's tracker makes them: runs closer than quiet_s are one episode."""
    active, onsets = decide_runs(probs, decision, features.hop_s)
    starts, last_end = [], -np.inf
    ends = _run_ends(active)
    for first in onsets:
        t = frame_time(first, features) / SAMPLE_RATE
        if t - last_end >= quiet_s:
            starts.append(t)
        end = ends.get(first)
        last_end = max(last_end, frame_time(end, features) / SAMPLE_RATE if end is not None else t)
    return starts


def _run_ends(active: np.ndarray) -> dict[int, int]:
    """First frame of each active run → its end (exclusive)."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return dict(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def event_errors(onsets: list[list[float]], mixtures: list[TuningMixture], collar: float = 0.5) -> dict[str, float]:
    """DCASE event-based counts with an onset collar (one reference event per cry mixture at most)."""
    n_ref = sum(m.onset_s is not None for m in mixtures)
    hits = insertions = 0
    for found, mixture in zip(onsets, mixtures):
        matched = mixture.onset_s is not None and any(abs(t - mixture.onset_s) <= collar for t in found)
        hits += matched
        insertions += len(found) - matched
    deletions = n_ref - hits
    precision = hits / max(hits + insertions, 1)
    recall = hits / max(n_ref, 1)
    return {"er": (deletions + insertions) / max(n_ref, 1), "f1": 2 * precision * recall / max(precision + recall, 1e-9),
            "hits": hits, "insertions": insertions, "deletions": deletions}


def tune_decision(tracks: list[np.ndarray], mixtures: list[TuningMixture], quiet_s: float,
                  features: FeatureSettings) -> tuple[Decision, dict[str, Any]]:
    """The decision with the lowest event error rate on validation mixtures (ties: fewer insertions)."""
    grid = []
    # Minimum durations stay short: the monitor must publish an episode within 1 s of a cry's onset.
    for on, off, min_on, bridge in itertools.product((0.8, 0.9, 0.95, 0.97), (0.2, 0.3, 0.5), (0.1, 0.2, 0.3),
                                                     (0.0, 0.5, 1.0, 1.5)):
        decision = Decision(on, off, min_on, bridge)
        scores = event_errors([episode_onsets(p, decision, quiet_s, features) for p in tracks], mixtures)
        grid.append((scores["er"], scores["insertions"], -min_on, decision, scores))
    grid.sort(key=lambda g: g[:3])
    _er, _ins, _neg, decision, scores = grid[0]
    return decision, {"chosen": dataclasses.asdict(decision), "val_events": scores, "grid_points": len(grid)}


def mine_hard_negatives(model: DetectorModel, negatives: list[Record], threshold: float = HARD_THRESHOLD,
                        seed: int = 0) -> list[Record]:
    """The negatives `model` calls a cry somewhere: each alone at -25 dBFS over a quiet room floor."""
    rng, cache, hard = np.random.default_rng(seed), ClipCache(), []
    for record in tqdm(negatives, desc="mining hard negatives", unit="clip"):
        clip = cache(record)
        scene = room_noise(rng, len(clip) / SAMPLE_RATE + 2.0) * db_gain(-50.0)
        scene[SAMPLE_RATE:SAMPLE_RATE + len(clip)] += clip * (db_gain(-25.0) / active_rms(clip))
        if float(track(model, scene.astype(np.float32)).max()) >= threshold:
            hard.append(record)
    return hard


def fit_detector(splits: dict[str, list[Record]], tuning: list[TuningMixture], config: DetectorConfig, name: str,
                 workers: int, quiet_s: float, initial: DetectorModel | None = None,
                 extra_negatives: dict[str, list[Record]] | None = None) -> tuple[DetectorModel, dict[str, Any]]:
    """Trains on the training groups (continuing `initial` if given, and mining hard negatives with it
    when config.p_hard > 0), then tunes the run decisions on the validation mixtures. `extra_negatives`
    (per side, the second collection's) join the backgrounds when config.hard_backgrounds."""
    def pools(side: str) -> tuple[list[Record], list[Record]]:
        records = splits[side]
        return [r for r in records if r.target != "not_cry"], [r for r in records if r.target == "not_cry"]

    started = time.time()
    hard: list[Record] = []
    if config.p_hard > 0 and initial is not None:
        hard = mine_hard_negatives(initial, pools("train")[1])  # training groups only
        _LOGGER.info("%d hard negatives of %d: %s", len(hard), len(pools("train")[1]),
                     ", ".join(sorted({r.label for r in hard})))
    extra_kinds = HARD_KINDS if config.hard_backgrounds else ()
    extra = (extra_negatives or {}) if config.hard_backgrounds else {}
    train = build_bank(*pools("train"), config.train_examples, config.seconds, config.seed, workers, "train mixtures",
                       hard, config.p_hard, config.p_late, extra.get("train"), extra_kinds)
    val = build_bank(*pools("val"), config.val_examples, config.seconds, config.seed + 1, workers, "val mixtures",
                     extra_negatives=extra.get("val"), extra_kinds=extra_kinds)
    network, log = train_network(train, val, config, initial.weights if initial is not None else None)
    log |= {"initial": initial.id if initial is not None else None,
            "hard_negatives": sorted(r.key for r in hard)}
    features = FeatureSettings()
    model = DetectorModel(name, features, config.architecture, Decision(), exported(network))
    tracks = [track(model, m.samples) for m in tqdm(tuning, desc="tuning tracks", unit="mixture")]
    decision, tuned = tune_decision(tracks, tuning, quiet_s, features)
    info = {"training": log, "tuning": tuned, "config": dataclasses.asdict(config),
            "lookahead_s": round(config.architecture.lookahead_frames * features.hop_s, 3),
            "train_seconds": round(time.time() - started, 1),
            "parameters": sum(p.numel() for p in network.parameters())}
    return dataclasses.replace(model, decision=decision, metadata={"training": info}), info


# ---------------------------------------------------------------------------------------------
# Command


def run_command(args: Any) -> int:
    """Train on the training groups, tune on validation mixtures, write the detector folder."""
    from monitor.config import load_settings
    from train.datasets import more_index, read_dataset
    from train.detector.benchmark import read_mixtures, write_mixtures
    from train.detector.mixing import detector_split
    from train.labels import load_label_map

    label_map = load_label_map(args.label_map)
    records = read_dataset(args.data, label_map)
    hard_backgrounds = args.hard_backgrounds
    more = read_dataset(more_index(args.data, args.more), label_map) if hard_backgrounds else None
    splits = detector_split(records, args.split_seed, more)
    # The second collection gives negatives only: its cries are a model's guess, and the run trains on the
    # same cries (the cries collection's) as before.
    extra = set(more or [])
    extra_negatives = {side: [r for r in rs if r in extra and r.target == "not_cry"] for side, rs in splits.items()}
    own = {side: [r for r in rs if r not in extra] for side, rs in splits.items()}
    tuning_dir = args.runs / f"{args.out.name}-val-mixtures"
    write_mixtures(records, tuning_dir, args.tuning_mixtures, "val", args.seed, args.invocation, args.split_seed,
                   more, HARD_KINDS if hard_backgrounds else ())
    tuning = [TuningMixture(load_audio(tuning_dir / row["filename"]),
                            float(row["onset_s"]) if row["cry"] == "1" else None)
              for row in read_mixtures(tuning_dir)]
    initial = DetectorModel.load(args.init) if args.init else None
    architecture = initial.architecture if initial is not None else Architecture(
        tuple(int(c) for c in args.channels.split(",")), args.hidden, args.delay_frames)
    config = DetectorConfig(train_examples=args.examples, epochs=args.epochs, seed=args.seed, lr=args.lr,
                            architecture=architecture, p_hard=args.hard_negatives, p_late=args.late_onsets,
                            onset_weight=args.onset_weight, hard_backgrounds=hard_backgrounds)
    quiet_s = load_settings(args.config).episodes.quiet_s
    model, info = fit_detector(own, tuning, config, args.out.name, args.workers or os.cpu_count() or 1, quiet_s,
                               initial, extra_negatives)
    info.update(command=args.invocation, data=str(args.data), split_seed=args.split_seed,
                split_groups={side: sorted({r.key for r in rs}) for side, rs in splits.items()},
                created=time.strftime("%Y-%m-%d %H:%M:%S"))
    model.save(args.out)
    tuned = info["tuning"]
    print(f"detector written to {args.out}: decision {tuned['chosen']}, validation events {tuned['val_events']}")
    return 0
