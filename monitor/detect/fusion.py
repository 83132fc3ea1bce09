"""Detector v2: the CRNN's frame probability fused with a pretrained backbone's cry score.

The CRNN (monitor/detect/crnn.py) decides *when*: a probability every 20 ms, onsets to the frame. It
learned from 312 training groups, so it calls sounds it never met (adult crying, parents talking,
engines) cries, and half-believes some clear cries. The backbone (YAMNet, trained on two million
AudioSet clips, `monitor/detect/yamnet.py`) knows *what*: a linear head on its embedding of the 0.975 s
patch around a frame scores it as cry or not. The two logits are summed with weights chosen on
validation groups, averaged over a short centred span, and Platt-scaled on validation frames (so
0.5 is even odds): that is the probability the gate decides on.

The backbone runs only on patches where the CRNN reaches `run_above` somewhere: in silence it
costs nothing, and a patch it skips counts as `skipped_score`. Feeding a recording at once or in
small blocks gives the same probabilities (tested), as for the CRNN alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from monitor.detect.frames import FeatureSettings, FrameStream, frame_time
from monitor.detect.yamnet import EMBEDDING_DIM, PATCH_SAMPLES, YamnetModel, log_mel

BACKBONE_HOP = 160  # the backbone's frames: 10 ms
_PATCH_CENTRE = PATCH_SAMPLES // 2
_EPS = 1e-4


class Backbone(Protocol):
    """Audio patches (n, PATCH_SAMPLES) of 16 kHz float32 → (n, k) cry scores in [0, 1]."""

    @property
    def id(self) -> str: ...

    def cry_scores(self, patches: np.ndarray) -> np.ndarray: ...


HEAD_WEIGHT, HEAD_BIAS = "backbone_head.weight", "backbone_head.bias"  # in the detector's weights file


class YamnetCry:
    """A linear cry head on YAMNet's 1024-d embedding, trained on our training groups. YAMNet's own "Baby
    cry, infant cry" class half-misses the phone-recorded cries (docs/detector.md); its embedding, learned
    from two million clips, still tells them from speech, alarms and engines once a head is trained on it."""

    def __init__(self, model: YamnetModel, head_weight: np.ndarray, head_bias: float):
        if head_weight.shape != (EMBEDDING_DIM,):
            raise ValueError(f"the backbone head has {head_weight.shape} weights, YAMNet's embedding is {EMBEDDING_DIM}-d")
        self.model = model
        self.head_weight, self.head_bias = head_weight.astype(np.float32), float(head_bias)

    @property
    def id(self) -> str:
        return self.model.id

    def cry_scores(self, patches: np.ndarray) -> np.ndarray:
        if not len(patches):
            return np.zeros((0, 1), np.float32)
        embeddings = self.model.run(np.stack([log_mel(p) for p in patches])).embeddings
        return (1.0 / (1.0 + np.exp(-(embeddings @ self.head_weight + self.head_bias))))[:, None].astype(np.float32)


@dataclass(frozen=True)
class Fusion:
    """How the backbone joins the CRNN; fitted and tuned on validation groups, stored in detector.json."""

    backbone: str  # the backbone's folder, relative to the detector's
    backbone_id: str  # the weights the fusion was fitted with: another backbone is refused
    hop_frames: int = 48  # backbone patches every 0.48 s (its 10 ms frames), as YAMNet scores
    run_above: float = 0.05  # the backbone scores a patch only where the CRNN reaches this
    skipped_score: float = 0.001  # what each score of a patch the backbone skipped counts as
    # fused logit = crnn_weight * logit(crnn) + sum of backbone_weights * logit(scores) + bias
    crnn_weight: float = 1.0
    backbone_weights: tuple[float, ...] = (0.0,)
    bias: float = 0.0
    smooth_frames: int = 1  # centred mean over this many frames (odd)
    # Platt scaling of the smoothed probability, fitted on validation frames: 0.5 is even odds
    calibration: tuple[float, float] = (1.0, 0.0)

    def __post_init__(self) -> None:
        if self.hop_frames < 1 or self.smooth_frames < 1 or self.smooth_frames % 2 == 0:
            raise ValueError(f"fusion hop_frames {self.hop_frames} and smooth_frames {self.smooth_frames}: "
                             "need a positive hop and an odd span")

    @staticmethod
    def from_json(section: dict) -> "Fusion":
        scale, shift = section["calibration"]
        return Fusion(**{**section, "backbone_weights": tuple(float(w) for w in section["backbone_weights"]),
                         "calibration": (float(scale), float(shift))})

    def calibrate(self, smoothed: np.ndarray) -> np.ndarray:
        scale, shift = self.calibration
        return (1.0 / (1.0 + np.exp(-(scale * logit(smoothed) + shift)))).astype(np.float32)

    @property
    def step(self) -> int:
        """Samples between backbone patches."""
        return self.hop_frames * BACKBONE_HOP

    def fuse(self, crnn: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """(frames,) CRNN probabilities and (frames, k) backbone scores → (frames,) fused probabilities."""
        z = self.crnn_weight * logit(crnn) + logit(scores) @ np.asarray(self.backbone_weights) + self.bias
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def patch_of(self, frames: np.ndarray, features: FeatureSettings) -> np.ndarray:
        """The backbone patch whose centre is nearest each detector frame's time."""
        t = frame_time(np.asarray(frames), features)
        return np.maximum(0, np.floor((t - _PATCH_CENTRE) / self.step + 0.5)).astype(np.int64)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def audio_patch(audio: np.ndarray, start: int) -> np.ndarray:
    """PATCH_SAMPLES from `start`, zero-padded past the end of the recording."""
    patch = audio[start: start + PATCH_SAMPLES]
    return patch if len(patch) == PATCH_SAMPLES else np.pad(patch, (0, PATCH_SAMPLES - len(patch)))


def frame_scores(crnn: np.ndarray, patch_scores: np.ndarray, fusion: Fusion, features: FeatureSettings) -> np.ndarray:
    """Per frame, the backbone score the stream uses: its patch's score where the CRNN reached `run_above` within
    that patch's frames, else `skipped_score`. For fitting and tests on whole recordings (every patch scored)."""
    patch = fusion.patch_of(np.arange(len(crnn)), features)
    peak = np.zeros(patch[-1] + 1 if len(patch) else 0)
    np.maximum.at(peak, patch, crnn)
    ran = peak >= fusion.run_above
    return np.where(ran[patch, None], patch_scores[np.minimum(patch, len(patch_scores) - 1)], fusion.skipped_score)


def smooth(probs: np.ndarray, frames: int) -> np.ndarray:
    """Centred mean over `frames`, the ends extended with their edge values (as the stream does)."""
    half = frames // 2
    if not half or not len(probs):
        return probs.astype(np.float32)
    padded = np.concatenate([np.repeat(probs[:1], half), probs, np.repeat(probs[-1:], half)])
    return np.convolve(padded, np.full(frames, 1.0 / frames), "valid").astype(np.float32)


def patches_for(n_frames: int, fusion: Fusion, features: FeatureSettings) -> int:
    """How many backbone patches the frames of a recording map to (the stream pads the last ones)."""
    return int(fusion.patch_of(np.array([n_frames - 1]), features)[0]) + 1 if n_frames else 0


class FusedStream:
    """The v2 detector's probability per frame for a stream fed in blocks of any size (push/flush as
    StreamingDetector). A frame is fused once every frame of its patch has a CRNN probability and the
    patch's audio has arrived: about 0.1 s after the CRNN alone. `crnn` is the CRNN's own stream of the
    detector whose `fusion` this is."""

    def __init__(self, fusion: Fusion, features: FeatureSettings, crnn: FrameStream, backbone: Backbone):
        self.fusion = fusion
        self._features = features
        self._backbone = backbone
        self._crnn = crnn
        self._audio = np.zeros(0, np.float32)
        self._audio_from = 0  # absolute sample index of _audio[0]
        self._heard = 0
        self._probs = np.zeros(0, np.float32)  # CRNN probabilities of frames not fused yet
        self._probs_from = 0  # frame index of _probs[0]
        self._tail: np.ndarray | None = None  # fused frames the centred mean still needs
        self.patches_run = 0  # backbone calls, for cost figures
        self.patches_skipped = 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, np.float32)
        self._audio = np.concatenate([self._audio, samples])
        self._heard += len(samples)
        self._probs = np.concatenate([self._probs, self._crnn.push(samples)])
        return self.fusion.calibrate(self._smoothed(self._fuse_ready(final=False), final=False))

    def flush(self) -> np.ndarray:
        self._probs = np.concatenate([self._probs, self._crnn.flush()])
        return self.fusion.calibrate(self._smoothed(self._fuse_ready(final=True), final=True))

    def _fuse_ready(self, final: bool) -> np.ndarray:
        if not len(self._probs):
            return np.zeros(0, np.float32)
        patch = self.fusion.patch_of(np.arange(self._probs_from, self._probs_from + len(self._probs)), self._features)
        ready = int(patch[-1])
        if not final:  # the newest patch may still gain frames, and its audio must have arrived
            ready = min(ready - 1, (self._heard - PATCH_SAMPLES) // self.fusion.step)
        n = int(np.searchsorted(patch, ready, side="right"))
        if n == 0:
            return np.zeros(0, np.float32)
        probs, patch = self._probs[:n], patch[:n]
        firsts = np.flatnonzero(np.r_[True, patch[1:] != patch[:-1]])
        peaks = np.maximum.reduceat(probs, firsts)
        ids = patch[firsts]
        run = ids[peaks >= self.fusion.run_above]
        skipped = np.full(len(self.fusion.backbone_weights), self.fusion.skipped_score, np.float32)
        scores = dict.fromkeys(ids.tolist(), skipped)
        if len(run):
            audio = np.stack([audio_patch(self._audio, int(p) * self.fusion.step - self._audio_from) for p in run])
            scores.update(zip(run.tolist(), self._backbone.cry_scores(audio)))
        self.patches_run += len(run)
        self.patches_skipped += len(ids) - len(run)
        fused = self.fusion.fuse(probs, np.stack([scores[p] for p in patch.tolist()]))
        self._probs, self._probs_from = self._probs[n:], self._probs_from + n
        keep_from = (ready + 1) * self.fusion.step  # the first sample a later patch reads
        if keep_from > self._audio_from:
            self._audio = self._audio[keep_from - self._audio_from:]
            self._audio_from = keep_from
        return fused

    def _smoothed(self, fused: np.ndarray, final: bool) -> np.ndarray:
        half = self.fusion.smooth_frames // 2
        if not half:
            return fused
        if self._tail is None:
            if not len(fused):
                return fused
            self._tail = np.repeat(fused[:1], half)
        buffer = np.concatenate([self._tail, fused])
        if final:
            buffer = np.concatenate([buffer, np.repeat(buffer[-1:], half)])
        n_out = len(buffer) - 2 * half
        if n_out <= 0:
            self._tail = buffer
            return np.zeros(0, np.float32)
        self._tail = buffer[n_out:]
        return np.convolve(buffer, np.full(self.fusion.smooth_frames, 1.0 / self.fusion.smooth_frames),
                           "valid").astype(np.float32)
