"""The learned frame-level cry detector: log-mel frames → a cry probability every 20 ms.

One `LogMel` computes features for training and for streaming, so the model meets at run time
exactly what it was trained on. The network is a small CRNN that streams: its convolutions are
"valid" in time (a stream keeps the last few feature frames as left context and looks
CONV_LOOKAHEAD frames ahead) and its GRU is unidirectional, restarted from rest a fixed context
before every chunk of frames. Its output for a frame comes `delay_frames` steps later, so the GRU
has heard that much of what follows (a cry's first bout is easier to call once the second has
begun); the whole look-ahead is `Architecture.lookahead_frames`, a bounded part of the monitor's
latency. Feeding a recording at once or in 50 ms blocks gives the same probabilities.

A detector artifact is a folder: detector.json (feature settings, architecture, decision
thresholds, provenance) and weights.safetensors (trained by train/detector/training.py in torch, run
here in numpy).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monitor.detect.frames import Decision, FeatureSettings
from monitor.detect.fusion import HEAD_BIAS, HEAD_WEIGHT, Backbone, FusedStream, Fusion, YamnetCry
from monitor.messages import SAMPLE_RATE

DETECTOR_FORMAT = 1  # fusion is an optional section: v1 folders load unchanged
CONV_LAYERS = 3
CONV_LOOKAHEAD = CONV_LAYERS  # each time-kernel of 3 looks one frame ahead
_LOG_FLOOR = 1e-7


class DetectorError(RuntimeError):
    """A detector model that cannot be used; the message names the file and the fix."""


def _mel_filterbank(s: FeatureSettings) -> np.ndarray:
    """HTK mel triangles, (n_fft // 2 + 1, n_mels), area-normalised like librosa's slaney norm."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    mels = np.linspace(hz_to_mel(np.array(s.fmin)), hz_to_mel(np.array(s.fmax)), s.n_mels + 2)
    edges = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    freqs = np.linspace(0, s.sample_rate / 2, s.n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (upper - lower))
    return bank.T.astype(np.float32)


class LogMel:
    """Samples → log-mel frames; frame i covers samples [i * hop, i * hop + frame_length)."""

    def __init__(self, settings: FeatureSettings):
        self.settings = settings
        self._window = np.hanning(settings.frame_length + 2)[1:-1].astype(np.float32)
        self._bank = _mel_filterbank(settings)

    def frames_in(self, n_samples: int) -> int:
        s = self.settings
        return max(0, (n_samples - s.frame_length) // s.frame_hop + 1)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """(n_frames, n_mels) float32 for every whole frame in `samples`."""
        s = self.settings
        n = self.frames_in(len(samples))
        if n == 0:
            return np.zeros((0, s.n_mels), np.float32)
        frames = np.lib.stride_tricks.as_strided(
            np.ascontiguousarray(samples, np.float32), (n, s.frame_length),
            (s.frame_hop * 4, 4), writeable=False)
        spectrum = np.fft.rfft(frames * self._window, s.n_fft, axis=1)
        power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
        return np.log(power @ self._bank + _LOG_FLOOR).astype(np.float32)


@dataclass(frozen=True)
class Architecture:
    channels: tuple[int, ...] = (16, 32, 48)
    hidden: int = 64
    delay_frames: int = 20  # the GRU's output for a frame comes this many frames later (0.4 s)
    # At run time the GRU restarts from rest `context_frames` before every chunk of `chunk_frames`:
    # it was trained on 8 s examples, and hours of carried state drift where training never went.
    context_frames: int = 100
    chunk_frames: int = 5

    @property
    def lookahead_frames(self) -> int:
        return CONV_LOOKAHEAD + self.delay_frames

    def __post_init__(self) -> None:
        if len(self.channels) != CONV_LAYERS:
            raise ValueError(f"the detector has {CONV_LAYERS} conv blocks, got channels {self.channels}")


def band_pools(n_mels: int) -> list[int]:
    """Frequency pooling after each conv block: by 4 while at least 4 bands remain."""
    pools, bands = [], n_mels
    for _ in range(CONV_LAYERS):
        pools.append(4 if bands >= 4 else 1)
        bands //= pools[-1]
    return pools


class CRNNForward:
    """The detector network's forward pass in numpy (the monitor needs no deep-learning runtime).

    Weights are those of train/detector/training.py's torch `CryCRNN`, by its state-dict names: conv
    blocks (Conv2d 3x3 valid in time, BatchNorm folded in here, ReLU, max-pool over frequency),
    a unidirectional GRU over time, a linear output.
    """

    def __init__(self, weights: dict[str, np.ndarray], n_mels: int):
        self.band_mean, self.band_std = weights["band_mean"], weights["band_std"]
        self.pools = band_pools(n_mels)
        self.convs = []
        for i in range(CONV_LAYERS):
            conv, norm = f"conv.{4 * i}", f"conv.{4 * i + 1}"
            kernel = weights[f"{conv}.weight"]  # (out, in, time, freq)
            scale = weights[f"{norm}.weight"] / np.sqrt(weights[f"{norm}.running_var"] + 1e-5)
            bias = (weights[f"{conv}.bias"] - weights[f"{norm}.running_mean"]) * scale + weights[f"{norm}.bias"]
            matrix = (kernel * scale[:, None, None, None]).transpose(2, 3, 1, 0).reshape(-1, kernel.shape[0])
            self.convs.append((matrix.astype(np.float32), bias.astype(np.float32)))
        self.w_ih, self.b_ih = weights["gru.weight_ih_l0"].T.copy(), weights["gru.bias_ih_l0"]
        self.w_hh, self.b_hh = weights["gru.weight_hh_l0"].T.copy(), weights["gru.bias_hh_l0"]
        self.hidden = self.w_hh.shape[0]
        self.w_out, self.b_out = weights["out.weight"][0], float(weights["out.bias"][0])

    def inputs(self, features: np.ndarray) -> np.ndarray:
        """(frames, n_mels) log-mel → (frames - 2 * CONV_LOOKAHEAD, 3 * hidden) GRU input projections."""
        x = ((features - self.band_mean) / self.band_std)[:, :, None]  # (time, bands, channels)
        for (matrix, bias), pool in zip(self.convs, self.pools):
            frames, bands = x.shape[0] - 2, x.shape[1]
            padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
            patches = np.concatenate([padded[dt : dt + frames, df : df + bands] for dt in range(3) for df in range(3)],
                                     axis=2)
            x = np.maximum(patches @ matrix + bias, 0.0)
            x = x[:, : bands // pool * pool].reshape(frames, bands // pool, pool, -1).max(axis=2)
        x = x.transpose(0, 2, 1).reshape(x.shape[0], -1)  # channel-major, as torch flattens
        return (x @ self.w_ih + self.b_ih).astype(np.float32)

    def recur(self, gates_x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(batch, steps, 3 * hidden) → (batch, steps) logits, each row's GRU starting at rest; a step
        that is not `valid` leaves the state alone (rows of different length share one loop)."""
        hidden = self.hidden
        h = np.zeros((gates_x.shape[0], hidden), np.float32)
        outputs = np.empty(gates_x.shape[:2] + (hidden,), np.float32)
        for t in range(gates_x.shape[1]):
            gx, gh = gates_x[:, t], h @ self.w_hh + self.b_hh
            r = _sigmoid(gx[:, :hidden] + gh[:, :hidden])
            z = _sigmoid(gx[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
            n = np.tanh(gx[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
            h = np.where(valid[:, t, None], (1 - z) * n + z * h, h)
            outputs[:, t] = h
        return outputs @ self.w_out + self.b_out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class DetectorModel:
    """A loaded, checked detector: its weights and forward pass plus what its input must be."""

    name: str
    features: FeatureSettings
    architecture: Architecture
    decision: Decision
    weights: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    fusion: Fusion | None = None  # v2: the CRNN fused with a pretrained backbone (monitor/detect/fusion.py)
    backbone: Backbone | None = field(default=None, compare=False)

    @property
    def id(self) -> str:
        """Weights, fusion and run decisions: all decide which windows a head is trained and run on."""
        fusion = asdict(self.fusion) if self.fusion is not None else None
        key = json.dumps({"weights": self.metadata.get("weights_sha1", "unsaved"), **asdict(self.decision),
                          **({"fusion": fusion} if fusion else {})}, sort_keys=True)
        return f"{self.name}@{hashlib.sha1(key.encode()).hexdigest()[:12]}"

    def forward(self) -> CRNNForward:
        return CRNNForward(self.weights, self.features.n_mels)

    def stream(self) -> "StreamingDetector | FusedStream":
        """The detector's probability per frame for a stream: the CRNN's own, or fused with the backbone."""
        if self.fusion is None:
            return StreamingDetector(self)
        assert self.backbone is not None, "a fused detector is loaded with its backbone"
        return FusedStream(self.fusion, self.features, StreamingDetector(self), self.backbone)

    @staticmethod
    def load(folder: str | Path) -> "DetectorModel":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        meta_path, weights_path = folder / "detector.json", folder / WEIGHTS_FILE
        fix = "set [detector] model to a detector folder, or train one with `python -m train detector`"
        if not meta_path.is_file() or not weights_path.is_file():
            raise DetectorError(f"no cry detector at {folder} (needs detector.json and {WEIGHTS_FILE}): {fix}")
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, OSError) as exc:
            raise DetectorError(f"cry detector {meta_path} is unreadable ({exc}): restore it or retrain it "
                                "with `python -m train detector`") from exc
        try:
            weights = load_file(weights_path)
        except (ValueError, OSError, SafetensorError) as exc:
            raise DetectorError(f"cry detector {weights_path} is unreadable ({exc}): restore it or retrain it "
                                "with `python -m train detector`") from exc
        if meta.get("format") != DETECTOR_FORMAT:
            raise DetectorError(f"cry detector {meta_path} has format {meta.get('format')}, this monitor reads "
                                f"{DETECTOR_FORMAT}: {fix}")
        try:
            features = FeatureSettings(**meta["features"])
            shape = meta["architecture"]
            arch = Architecture(tuple(shape["channels"]), int(shape["hidden"]), int(shape["delay_frames"]),
                                int(shape["context_frames"]), int(shape["chunk_frames"]))
            decision = Decision(**meta["decision"])
            fusion = Fusion.from_json(meta["fusion"]) if meta.get("fusion") else None
        except (KeyError, TypeError, ValueError) as exc:
            raise DetectorError(f"cry detector {meta_path} is malformed ({exc}): {fix}") from exc
        if features.sample_rate != SAMPLE_RATE:
            raise DetectorError(f"cry detector {meta_path} was trained at {features.sample_rate} Hz but the monitor "
                                f"runs at {SAMPLE_RATE} Hz: {fix}")
        if features != FeatureSettings():
            raise DetectorError(f"cry detector {meta_path} expects features {asdict(features)} but this monitor "
                                f"computes {asdict(FeatureSettings())}: {fix}")
        backbone = _load_backbone(folder, meta_path, fusion, weights) if fusion is not None else None
        model = DetectorModel(meta.get("name", folder.name), features, arch, decision,
                              {k: v.astype(np.float32) for k, v in weights.items()}, meta, fusion, backbone)
        try:
            model._check_shapes()
            forward = model.forward()
            forward.recur(forward.inputs(np.zeros((2 * CONV_LOOKAHEAD + 1, features.n_mels), np.float32))[None],
                          np.ones((1, 1), bool))
        except (KeyError, ValueError, IndexError) as exc:
            raise DetectorError(f"cry detector weights {weights_path} do not fit its detector.json ({exc}): {fix}") from exc
        return model

    def _check_shapes(self) -> None:
        widths = (1, *self.architecture.channels)
        for i in range(CONV_LAYERS):
            shape = self.weights[f"conv.{4 * i}.weight"].shape
            if shape != (widths[i + 1], widths[i], 3, 3):
                raise ValueError(f"conv block {i} is {shape}, the architecture says {widths[i + 1]} channels")
        hidden = self.weights["gru.weight_hh_l0"].shape
        if hidden != (3 * self.architecture.hidden, self.architecture.hidden):
            raise ValueError(f"GRU weights are {hidden}, the architecture says hidden {self.architecture.hidden}")

    def save(self, folder: str | Path) -> None:
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / WEIGHTS_FILE
        save_file({k: np.ascontiguousarray(v) for k, v in self.weights.items()}, weights)
        meta = {**self.metadata, "format": DETECTOR_FORMAT, "name": self.name, "features": asdict(self.features),
                "architecture": asdict(self.architecture), "decision": asdict(self.decision),
                "fusion": asdict(self.fusion) if self.fusion is not None else None,
                "weights_sha1": hashlib.sha1(weights.read_bytes()).hexdigest()}
        (folder / "detector.json").write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")


def _load_backbone(folder: Path, meta_path: Path, fusion: Fusion, weights: dict[str, np.ndarray]) -> Backbone:
    """The backbone a fused detector was fitted with, and no other, with the head trained on its embedding."""
    from monitor.detect.yamnet import YamnetError, YamnetModel

    where = (folder / fusion.backbone).resolve()
    try:
        backbone = YamnetCry(YamnetModel.load(where), weights[HEAD_WEIGHT], float(weights[HEAD_BIAS][0]))
    except YamnetError as exc:
        raise DetectorError(f"cry detector {meta_path} needs its backbone at {where}: {exc}") from exc
    except (KeyError, ValueError, IndexError) as exc:
        raise DetectorError(f"cry detector {folder / WEIGHTS_FILE} lacks a usable backbone head ({exc}): retrain it with "
                            "`python -m train fuse-detector`") from exc
    if backbone.id != fusion.backbone_id:
        raise DetectorError(f"cry detector {meta_path} was fitted with backbone {fusion.backbone_id} but {where} holds "
                            f"{backbone.id}: restore that backbone, or refit the detector with `python -m train fuse-detector`")
    return backbone


class StreamingDetector:
    """Cry probability per frame for a stream fed in blocks of any size.

    Probabilities come `lookahead_frames` behind the newest whole frame, a chunk of
    `chunk_frames` at a time (the GRU reruns from rest over `context_frames` before each chunk,
    so chunks are aligned to the stream, not to the calls); `flush` gives the last ones at the
    end of a recording. The first frames of a stream are padded with a copy of the first frame,
    and the last at flush with copies of the last, exactly as in training.
    """

    def __init__(self, model: DetectorModel):
        self.model = model
        self.features = LogMel(model.features)
        arch = model.architecture
        self._hop = model.features.frame_hop
        self._length = model.features.frame_length
        self._delay, self._context_steps, self._chunk = arch.delay_frames, arch.context_frames, arch.chunk_frames
        self._forward = model.forward()
        self._pending = np.zeros(0, np.float32)  # samples not yet in a whole frame
        self._context: np.ndarray | None = None  # the last 2 * CONV_LOOKAHEAD feature frames
        self._gates = np.zeros((0, 3 * self._forward.hidden), np.float32)  # GRU inputs from step _gates_from on
        self._gates_from = 0
        self._steps_done = 0  # GRU steps whose output has been produced

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities for the frames that became final with these samples (possibly none)."""
        buffer = np.concatenate([self._pending, samples]) if len(self._pending) else np.asarray(samples, np.float32)
        n = self.features.frames_in(len(buffer))
        if n == 0:
            self._pending = buffer
            return np.zeros(0, np.float32)
        frames = self.features(buffer[: (n - 1) * self._hop + self._length])
        self._pending = buffer[n * self._hop:]
        if self._context is None:
            self._context = np.repeat(frames[:1], CONV_LOOKAHEAD, axis=0)
        self._add(frames)
        return self._chunks(final=False)

    def flush(self) -> np.ndarray:
        """End of stream: the last probabilities, the future padded like in training."""
        if self._context is None:
            return np.zeros(0, np.float32)
        self._add(np.repeat(self._context[-1:], self.model.architecture.lookahead_frames, axis=0))
        return self._chunks(final=True)

    def _add(self, frames: np.ndarray) -> None:
        assert self._context is not None
        window = np.concatenate([self._context, frames])
        self._context = window[-2 * CONV_LOOKAHEAD:]
        if len(window) > 2 * CONV_LOOKAHEAD:
            self._gates = np.concatenate([self._gates, self._forward.inputs(window)])

    def _chunks(self, final: bool) -> np.ndarray:
        """Every complete chunk (and at the end the last, shorter one), all chunks in one batch."""
        available = self._gates_from + len(self._gates)
        starts = list(range(self._steps_done, available - self._chunk + 1, self._chunk))
        if final and (starts[-1] + self._chunk if starts else self._steps_done) < available:
            starts.append(starts[-1] + self._chunk if starts else self._steps_done)
        if not starts:
            return np.zeros(0, np.float32)
        span = self._context_steps + self._chunk
        gates = np.zeros((len(starts), span, self._gates.shape[1]), np.float32)
        valid = np.zeros((len(starts), span), bool)
        for row, start in enumerate(starts):
            first, end = max(0, start - self._context_steps), min(start + self._chunk, available)
            rows = self._gates[first - self._gates_from : end - self._gates_from]
            gates[row, span - self._chunk - (start - first) : span - self._chunk + (end - start)] = rows
            valid[row, span - self._chunk - (start - first) : span - self._chunk + (end - start)] = True
        logits = self._forward.recur(gates, valid)[:, -self._chunk:]
        steps = np.concatenate([np.arange(s, min(s + self._chunk, available)) for s in starts])
        out = np.concatenate([logits[row, : min(self._chunk, available - s)] for row, s in enumerate(starts)])
        self._steps_done = int(steps[-1]) + 1
        keep = max(0, self._steps_done - self._context_steps)  # what the next chunk's warm-up needs
        self._gates, self._gates_from = self._gates[keep - self._gates_from:], keep
        return _sigmoid(out[steps >= self._delay]).astype(np.float32)  # earlier steps score the padding


def pad_for_training(features: np.ndarray, arch: Architecture) -> np.ndarray:
    """Edge padding that makes the network score every frame, as StreamingDetector does; the
    first `arch.delay_frames` outputs of the padded input belong to no frame and are dropped."""
    return np.concatenate([np.repeat(features[:1], CONV_LOOKAHEAD, 0), features,
                           np.repeat(features[-1:], arch.lookahead_frames, 0)])
