"""`python -m train fuse-detector`: detector v2, a trained CRNN fused with a pretrained backbone.

The backbone head (a logistic cry head on YAMNet's embedding) learns from training-group mixtures;
everything else is chosen on the validation groups (never on test): for each head weight and
smoothing span, a Platt calibration on validation frames (so the gate's probability is calibrated),
then the decision (hysteresis, minimum duration, bridge) under a recall floor: only the decisions with
which every clean validation cry opens an episode, alone and at +6 dB in a mixture, are candidates,
and among those the lowest event error rate wins.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from monitor.audio import load_audio
from monitor.detect import Decision, DetectorModel, FeatureSettings
from monitor.detect.frames import frame_time
from monitor.detect.fusion import (
    HEAD_BIAS,
    HEAD_WEIGHT,
    Backbone,
    Fusion,
    YamnetCry,
    audio_patch,
    frame_scores,
    logit,
    patches_for,
    smooth,
)
from monitor.detect.yamnet import YamnetModel, patch_spans, patches
from monitor.messages import SAMPLE_RATE
from train.datasets import Record
from train.detector.benchmark import CLEAN_COLLAR_S
from train.detector.mixing import FRAME_HOP, HARD_KINDS, TrainingMixer, cry_frames, event_bounds
from train.detector.training import TuningMixture, episode_onsets, event_errors, track

_LOGGER = logging.getLogger("train.fusion")  # its lines' name, as before the package
HEAD_WEIGHTS = (0.6, 1.0, 1.5, 2.5)  # the backbone head's logit beside the CRNN's (weight 1)
SMOOTH_FRAMES = (1, 5)
ONS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # calibrated probabilities
OFFS = (0.1, 0.2, 0.3, 0.4)
MIN_ONS = (0.2, 0.3)  # short: an episode must be published within about 1 s of a cry's onset
BRIDGES = (0.5, 1.0)


@dataclass(frozen=True)
class Recording:
    """One validation recording as the fit sees it: CRNN probabilities, every patch's backbone score, frame truth."""

    crnn: np.ndarray
    patch_scores: np.ndarray
    truth: np.ndarray  # per frame, 1 where the cry is
    onset_s: float | None  # reference onset (None: no cry)
    ebr_db: float | None  # None for a clean cry


def all_patch_scores(backbone: Backbone, samples: np.ndarray, step: int, n_patches: int, batch: int = 64) -> np.ndarray:
    """The backbone's score for patches 0..n_patches-1 (patch p starts at p * step), as the stream cuts them."""
    scores = [backbone.cry_scores(np.stack([audio_patch(samples, p * step) for p in range(lo, min(lo + batch, n_patches))]))
              for lo in range(0, n_patches, batch)]
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def recording(crnn_model: DetectorModel, backbone: Backbone, fusion: Fusion, samples: np.ndarray, truth_mask: np.ndarray,
              onset_s: float | None, ebr_db: float | None) -> Recording:
    crnn = track(crnn_model, samples)
    n_patches = patches_for(len(crnn), fusion, crnn_model.features)
    truth = np.zeros(len(crnn), np.float32)
    truth[: min(len(crnn), len(truth_mask))] = truth_mask[: len(crnn)]
    return Recording(crnn, all_patch_scores(backbone, samples, fusion.step, n_patches), truth, onset_s, ebr_db)


def mixture_truth(n_samples: int, onset_s: float | None, offset_s: float | None, features: FeatureSettings) -> np.ndarray:
    """Frames inside the reference cry's span (its bouts and the gaps between them)."""
    times = frame_time(np.arange(n_samples // features.frame_hop), features) / SAMPLE_RATE
    if onset_s is None or offset_s is None:
        return np.zeros(len(times), np.float32)
    return ((times >= onset_s) & (times <= offset_s)).astype(np.float32)


def clean_recordings(crnn_model: DetectorModel, backbone: Backbone, fusion: Fusion, cries: list[Record]) -> list[Recording]:
    """Each cry alone, as `crywatch analyze` plays a file: the recall floor's first half."""
    out = []
    for record in tqdm(cries, desc="clean validation cries", unit="cry"):
        samples = load_audio(record.path)
        bounds = event_bounds(samples)
        if bounds is None:  # no audible crying by the reference's own rule: nothing to open an episode for
            continue
        active = cry_frames(samples).astype(np.float32)
        out.append(recording(crnn_model, backbone, fusion, samples, active, bounds[0] / SAMPLE_RATE, None))
    return out


HEAD_EXAMPLES = 1500  # 8 s training-group examples for the backbone head (about 45,000 patches)
HEAD_POSITIVE = 0.3  # a patch whose frames are at least this much cry is a cry patch; 0 is not; between is left out


def head_examples(mixer: TrainingMixer, model: YamnetModel, count: int, seconds: float, hop_frames: int,
                  desc: str) -> tuple[np.ndarray, np.ndarray]:
    """(patches, 1024) YAMNet embeddings of mixed examples and each patch's share of cry frames."""
    embeddings, shares = [], []
    for _ in tqdm(range(count), desc=desc, unit="example"):
        samples, labels = mixer.example(seconds)
        cut = patches(samples, hop_frames)
        embeddings.append(model.run(cut).embeddings)
        for start, stop in patch_spans(len(cut), hop_frames):
            shares.append(float(labels[start // FRAME_HOP: stop // FRAME_HOP].mean()))
    return np.concatenate(embeddings), np.array(shares, np.float32)


def fit_head(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, float, dict]:
    """A logistic cry head on the embedding; the regularisation chosen by validation-group log loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss, roc_auc_score

    def usable(x: np.ndarray, share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = (share >= HEAD_POSITIVE) | (share == 0)
        return x[keep], share[keep] >= HEAD_POSITIVE

    (x, y), (xv, yv) = usable(*train), usable(*val)
    best: tuple[float, Any, float] | None = None
    for c in (0.01, 0.1, 1.0):
        model = LogisticRegression(C=c, max_iter=3000).fit(x, y)
        loss = float(log_loss(yv, model.predict_proba(xv)[:, 1], labels=[False, True]))
        if best is None or loss < best[0]:
            best = (loss, model, c)
    assert best is not None
    loss, model, c = best
    report = {"C": c, "val_log_loss": round(loss, 4), "val_auc": round(float(roc_auc_score(yv, model.decision_function(xv))), 4),
              "train_patches": int(len(y)), "val_patches": int(len(yv)), "train_cry_share": round(float(y.mean()), 3)}
    return model.coef_[0].astype(np.float32), float(model.intercept_[0]), report


def fit_calibration(recordings: list[Recording], fusion: Fusion, features: FeatureSettings) -> Fusion:
    """Platt scaling of the smoothed fused probability on validation frames: the gate's 0.5 is even odds."""
    from sklearn.linear_model import LogisticRegression

    raw = dataclasses.replace(fusion, calibration=(1.0, 0.0))
    x = np.concatenate([logit(fused_track(r, raw, features)) for r in recordings])[:, None]
    y = np.concatenate([r.truth for r in recordings]) >= 0.5
    model = LogisticRegression(C=10.0).fit(x, y)
    return dataclasses.replace(fusion, calibration=(round(float(model.coef_[0][0]), 4), round(float(model.intercept_[0]), 4)))


def fused_track(r: Recording, fusion: Fusion, features: FeatureSettings) -> np.ndarray:
    """What the stream gives for this recording (tested against FusedStream)."""
    fused = fusion.fuse(r.crnn, frame_scores(r.crnn, r.patch_scores, fusion, features))
    return fusion.calibrate(smooth(fused, fusion.smooth_frames))


def opens_in_time(starts: list[float], r: Recording) -> bool:
    """An episode started by the cry's onset + CLEAN_COLLAR_S (a clean clip holds nothing else to start one),
    or for a mixture, one that starts between 3 s before the onset (the bridge) and onset + CLEAN_COLLAR_S."""
    assert r.onset_s is not None
    earliest = -np.inf if r.ebr_db is None else r.onset_s - 3.0
    return any(earliest <= s <= r.onset_s + CLEAN_COLLAR_S for s in starts)


def tune_with_floor(clean: list[Recording], mixtures: list[Recording], fusion: Fusion, features: FeatureSettings,
                    quiet_s: float) -> tuple[Fusion, Decision, dict[str, Any]]:
    """For each head weight and smoothing span (calibrated on validation frames), every decision of the grid:
    among those that open an episode for every clean validation cry and every +6 dB one, the lowest ER (ties:
    fewer insertions). If none does, the one that misses fewest, then lowest ER, and the report says so."""
    in_floor = [r.ebr_db is not None and r.ebr_db >= 6 for r in mixtures]
    references = [TuningMixture(np.zeros(0, np.float32), r.onset_s) for r in mixtures]
    candidates: list[tuple[Any, ...]] = []
    rules = [Decision(a, b, c, d) for a in ONS for b in OFFS for c in MIN_ONS for d in BRIDGES if b < a]
    for weight, frames in itertools.product(HEAD_WEIGHTS, SMOOTH_FRAMES):
        shaped = fit_calibration(clean + mixtures, dataclasses.replace(
            fusion, crnn_weight=1.0, backbone_weights=(weight,), bias=0.0, smooth_frames=frames), features)
        clean_tracks = [fused_track(r, shaped, features) for r in clean]
        mixture_tracks = [fused_track(r, shaped, features) for r in mixtures]
        for decision in tqdm(rules, desc=f"decisions (head weight {weight}, smoothing {frames})", unit="rule", leave=False):
            missed = sum(not opens_in_time(episode_onsets(t, decision, quiet_s, features), r)
                         for t, r in zip(clean_tracks, clean))
            if candidates and missed > min(c[0] for c in candidates):
                continue  # cannot beat a rule that misses fewer
            starts = [episode_onsets(t, decision, quiet_s, features) for t in mixture_tracks]
            missed += sum(not opens_in_time(s, r) for s, r, floor in zip(starts, mixtures, in_floor) if floor)
            scores = event_errors(starts, references)
            candidates.append((missed, scores["er"], scores["insertions"], -decision.min_on_s, shaped, decision, scores))
    candidates.sort(key=lambda c: c[:4])
    missed, _er, _ins, _neg, fusion, decision, scores = candidates[0]
    report = {"chosen": dataclasses.asdict(decision), "head_weight": fusion.backbone_weights[0],
              "smooth_frames": fusion.smooth_frames, "calibration": list(fusion.calibration), "val_events": scores,
              "floor": {"clean_cries": len(clean), "cries_at_plus6_db": sum(in_floor), "missed": missed},
              "rules_scored": len(candidates)}
    if missed:
        _LOGGER.warning("no decision opens an episode for every clean validation cry and +6 dB cry: the best misses %d",
                        missed)
    return fusion, decision, report


def fuse_detector(base: DetectorModel, yamnet: YamnetModel, backbone_folder: str, splits: dict[str, list[Record]],
                  more: dict[str, list[Record]], mixtures: list[tuple[np.ndarray, dict[str, str]]], quiet_s: float,
                  name: str, hop_frames: int = 48, run_above: float = 0.05, head_examples_count: int = HEAD_EXAMPLES,
                  seed: int = 0, head: tuple[np.ndarray, float, dict] | None = None) -> tuple[DetectorModel, dict[str, Any]]:
    """`base`'s CRNN with YAMNet: the backbone head trained on training-group mixtures (the second collection's
    negatives and the synthesised confusers among them), then fitted and tuned on the validation recordings."""
    started = time.time()
    features = base.features

    def mixer(side: str, offset: int) -> TrainingMixer:
        records = splits[side]
        return TrainingMixer([r for r in records if r.target != "not_cry"], [r for r in records if r.target == "not_cry"],
                             seed=seed + offset, extra_negatives=[r for r in more[side] if r.target == "not_cry"],
                             extra_kinds=HARD_KINDS)

    if head is None:
        train = head_examples(mixer("train", 0), yamnet, head_examples_count, 8.0, hop_frames, "backbone head, train")
        val = head_examples(mixer("val", 1), yamnet, max(1, head_examples_count // 5), 8.0, hop_frames,
                            "backbone head, val")
        head = fit_head(train, val)
    weight, bias, head_report = head
    backbone = YamnetCry(yamnet, weight, bias)
    fusion = Fusion(backbone_folder, backbone.id, hop_frames=hop_frames, run_above=run_above)
    clean = clean_recordings(base, backbone, fusion, [r for r in splits["val"] if r.target != "not_cry"])
    mixed = []
    for samples, row in tqdm(mixtures, desc="validation mixtures", unit="mixture"):
        has_cry = row["cry"] == "1"
        onset = float(row["onset_s"]) if has_cry else None
        offset = float(row["offset_s"]) if has_cry else None
        mixed.append(recording(base, backbone, fusion, samples, mixture_truth(len(samples), onset, offset, features),
                               onset, float(row["ebr_db"]) if has_cry else None))
    fusion, decision, tuned = tune_with_floor(clean, mixed, fusion, features, quiet_s)
    info = {"base": base.id, "backbone": backbone.id, "backbone_head": head_report, "fusion": dataclasses.asdict(fusion),
            "tuning": tuned, "fit_seconds": round(time.time() - started, 1)}
    weights = {**base.weights, HEAD_WEIGHT: weight, HEAD_BIAS: np.array([bias], np.float32)}
    return dataclasses.replace(base, name=name, decision=decision, weights=weights, fusion=fusion, backbone=backbone,
                               metadata={**base.metadata, "v2": info}), info


def run_command(args: Any) -> int:
    from monitor.config import load_settings
    from train.datasets import more_index, read_dataset
    from train.detector.benchmark import read_mixtures, write_mixtures
    from train.detector.mixing import detector_split
    from train.labels import load_label_map

    base = DetectorModel.load(args.base)
    if base.fusion is not None:
        raise ValueError(f"{args.base} is already fused: give the CRNN-only detector it was built on")
    yamnet = YamnetModel.load(args.backbone)
    label_map = load_label_map(args.label_map)
    records = read_dataset(args.data, label_map)
    more_records = read_dataset(more_index(args.data, args.more), label_map)
    split_seed = int(base.metadata.get("training", {}).get("split_seed", 0))
    splits = detector_split(records, split_seed)  # the base detector's own split: its test groups stay unseen
    combined = detector_split(records, split_seed, more_records)
    extra = set(more_records)
    more = {side: [r for r in combined[side] if r in extra] for side in combined}
    # Validation mixtures of both kinds: the hard ones hold the second collection's validation-group sounds and
    # the synthesised confusers, so the decision is not tuned blind to what fools a cry detector.
    mixtures = []
    for suffix, extra_negatives, kinds in (("", None, ()), ("-hard", more_records, HARD_KINDS)):
        tuning_dir = args.runs / f"{args.out.name}-val-mixtures{suffix}"
        write_mixtures(records, tuning_dir, args.tuning_mixtures, "val", args.seed, args.invocation, split_seed,
                       extra_negatives, kinds)
        mixtures += [(load_audio(tuning_dir / row["filename"]), row) for row in read_mixtures(tuning_dir)]
    head = None
    if args.head_from is not None:  # refit the fusion and decision on a head already trained (same backbone)
        earlier = DetectorModel.load(args.head_from)
        if earlier.backbone is None or earlier.backbone.id != yamnet.id:
            raise ValueError(f"--head-from {args.head_from} has no head on backbone {yamnet.id}")
        assert isinstance(earlier.backbone, YamnetCry)
        head = (earlier.backbone.head_weight, earlier.backbone.head_bias, earlier.metadata["v2"]["backbone_head"])
    quiet_s = load_settings(args.config).episodes.quiet_s
    relative = Path(os.path.relpath(Path(args.backbone).resolve(), Path(args.out).resolve()))
    model, info = fuse_detector(base, yamnet, relative.as_posix(), splits, more, mixtures, quiet_s, args.out.name,
                                args.hop_frames, args.run_above, args.head_examples, args.seed, head)
    info.update(command=args.invocation, created=time.strftime("%Y-%m-%d %H:%M:%S"),
                more_groups={side: sorted({r.key for r in rs}) for side, rs in more.items()})
    model.metadata["v2"] = info
    model.save(args.out)
    print(f"detector written to {args.out}: backbone head {info['backbone_head']}, fusion {info['fusion']}, "
          f"decision {info['tuning']['chosen']}, validation {info['tuning']['val_events']}, floor {info['tuning']['floor']}")
    return 0
