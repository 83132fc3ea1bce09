"""YAMNet (Google's AudioSet classifier, 521 classes; class 20 is "Baby cry, infant cry") in numpy.

Front end, pinned to the golden vectors that ship with the model (yamnet_test_audio.bin →
yamnet_test_spectra.bin, from google-coral/coralmicro): each patch's 15,600 samples (0.975 s) are
scaled so that their peak is 1, cut into 96 frames of 400 samples (25 ms, periodic Hann) every
160 samples (10 ms), and each frame becomes |512-point FFT| → 64 HTK mel bands over 125-7500 Hz
(triangles of peak 1, DC bin excluded) → log(mel + 0.01). That is VGGish's mel_features recipe on a
peak-normalised clip; YAMNet's published recipe (`PUBLISHED`: log offset 0.001, no normalisation) is
off from the golden spectra by log(32768 / peak) plus the offset's difference.

Patch i of a stream cut with a hop of h frames covers samples [i * h * 160, i * h * 160 + 15600):
frame j of it covers [start + 160 j, start + 160 j + 400). `patch_spans` returns these.

Network: the TFLite file is full-integer (int8 activations as well as int8 weights, per-channel
weight scales): one 3x3 conv, 13 depthwise-separable blocks (ReLU6), a global mean → 1024-d
embedding, dense 521 → sigmoid. `YamnetModel` reproduces its integer arithmetic (as XNNPACK does
it: int32 accumulation, float32 requantisation rounded to nearest even) on integer-valued float32
arrays, so BLAS does the work; its scores were bit-identical to tf.lite's interpreter (XNNPACK) on
every patch tried. `quantised=False` runs the same weights dequantised with float activations instead
(scores within about 0.1 of the int8 ones; TFLite's reference kernels themselves differ from XNNPACK's
by up to 0.08, as they round differently).

A model folder (models/yamnet): yamnet.json (architecture, quantisation layout, provenance, the
weights' sha256), weights.safetensors (the int8 tensors with their scales and zero points),
yamnet_class_map.csv, LICENSE (Apache-2.0) and MODEL_CARD.md, written by
`python -m train yamnet-export`.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from monitor.messages import SAMPLE_RATE

YAMNET_FORMAT = 1
CRY_CLASS = 20  # "Baby cry, infant cry" (AudioSet /t/dd00002)
NUM_CLASSES = 521
EMBEDDING_DIM = 1024
PATCH_FRAMES = 96  # 0.96 s of 10 ms frames
FRAME_HOP = 160  # 10 ms
FRAME_LENGTH = 400  # 25 ms
PATCH_SAMPLES = (PATCH_FRAMES - 1) * FRAME_HOP + FRAME_LENGTH  # 15,600 = 0.975 s
DEFAULT_FOLDER = Path(__file__).resolve().parents[2] / "models" / "yamnet"
WEIGHTS_FILE = "weights.safetensors"
META_FILE = "yamnet.json"
CLASS_MAP_FILE = "yamnet_class_map.csv"
LICENSE_FILE = "LICENSE"
EXPORT_FIX = ("restore it from git, or re-export it with `python -m train yamnet-export --tflite "
              "yamnet_spectra_in.tflite --out {folder}`")


class YamnetError(RuntimeError):
    """A YAMNet model folder that cannot be used; the message names the file and the fix."""


# ---------------------------------------------------------------------------------------------
# Front end


@dataclass(frozen=True)
class FrontEnd:
    """Samples → log-mel frames. The defaults reproduce the golden spectra (see the module docstring)."""

    sample_rate: int = SAMPLE_RATE
    frame_length: int = FRAME_LENGTH
    frame_hop: int = FRAME_HOP
    n_fft: int = 512
    n_mels: int = 64
    fmin: float = 125.0
    fmax: float = 7500.0
    log_offset: float = 0.01
    peak_normalise: bool = True  # each patch (or each `log_mel` call) scaled to peak 1 first
    # A span quieter than one 16-bit step is not raised further: the golden clip came from int16, and
    # amplifying float rounding noise to full scale would only invent sounds.
    min_peak: float = 1.0 / 32768

    def frames_in(self, n_samples: int) -> int:
        return max(0, (n_samples - self.frame_length) // self.frame_hop + 1)

    @property
    def patch_samples(self) -> int:
        return (PATCH_FRAMES - 1) * self.frame_hop + self.frame_length


GOLDEN = FrontEnd()
PUBLISHED = FrontEnd(log_offset=0.001, peak_normalise=False)  # YAMNet's features.py (no normalisation)


def mel_matrix(front: FrontEnd = GOLDEN) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels): HTK mel (1127 ln(1 + f / 700)) triangles of peak 1, the DC bin zeroed,
    as both YAMNet's tf.signal.linear_to_mel_weight_matrix and VGGish's mel_features build them."""
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return 1127.0 * np.log1p(f / 700.0)

    bins = front.n_fft // 2 + 1
    mels = hz_to_mel(np.linspace(0.0, front.sample_rate / 2, bins))[:, None]
    edges = np.linspace(hz_to_mel(np.array(front.fmin)), hz_to_mel(np.array(front.fmax)), front.n_mels + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    bank = np.maximum(0.0, np.minimum((mels - lower) / (centre - lower), (upper - mels) / (upper - centre)))
    bank[0] = 0.0
    return bank.astype(np.float32)


class _Spectra:
    """Linear mel magnitudes (before the log), cached window and filterbank for one FrontEnd."""

    def __init__(self, front: FrontEnd):
        self.front = front
        # Periodic Hann (tf.signal.stft's and mel_features' default), not numpy's symmetric one.
        n = np.arange(front.frame_length)
        self.window = (0.5 - 0.5 * np.cos(2 * np.pi * n / front.frame_length)).astype(np.float32)
        self.bank = mel_matrix(front)

    def mel(self, samples: np.ndarray) -> np.ndarray:
        f = self.front
        samples = np.ascontiguousarray(samples, np.float32)
        n = f.frames_in(len(samples))
        if n == 0:
            return np.zeros((0, f.n_mels), np.float32)
        frames = np.lib.stride_tricks.as_strided(samples, (n, f.frame_length), (f.frame_hop * 4, 4), writeable=False)
        return (np.abs(np.fft.rfft(frames * self.window, f.n_fft, axis=1)).astype(np.float32) @ self.bank)


_SPECTRA: dict[FrontEnd, _Spectra] = {}


def _spectra(front: FrontEnd) -> _Spectra:
    if front not in _SPECTRA:
        _SPECTRA[front] = _Spectra(front)
    return _SPECTRA[front]


def _check_samples(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"YAMNet takes mono samples, got an array of shape {samples.shape}")
    return samples.astype(np.float32, copy=False)


def _gain(peak: np.ndarray | float, front: FrontEnd) -> np.ndarray:
    return (1.0 / np.maximum(peak, front.min_peak)).astype(np.float32)


def log_mel(samples: np.ndarray, front: FrontEnd = GOLDEN) -> np.ndarray:
    """(n_frames, n_mels) float32 for every whole frame; frame i covers samples [160 i, 160 i + 400).

    With `peak_normalise` the whole of `samples` is scaled to peak 1 (the golden vectors are one
    patch's 15,600 samples); `patches` normalises each patch on its own instead.
    """
    samples = _check_samples(samples)
    mel = _spectra(front).mel(samples)
    if front.peak_normalise and len(samples):
        mel *= _gain(np.abs(samples).max(), front)
    return np.log(mel + np.float32(front.log_offset))


def patch_count(n_samples: int, hop_frames: int = 48, front: FrontEnd = GOLDEN) -> int:
    """Whole patches in `n_samples` samples at a hop of `hop_frames` frames."""
    if hop_frames < 1:
        raise ValueError(f"patch hop {hop_frames} frames: must be at least 1")
    return max(0, (n_samples - front.patch_samples) // (hop_frames * front.frame_hop) + 1)


def patch_spans(n_patches: int, hop_frames: int = 48, front: FrontEnd = GOLDEN) -> np.ndarray:
    """(n_patches, 2) int64 sample [start, stop) each patch covers: start = i * hop_frames * 160,
    stop = start + 15,600. A patch's centre is start + 7,800 samples (0.4875 s)."""
    starts = np.arange(n_patches, dtype=np.int64) * hop_frames * front.frame_hop
    return np.stack([starts, starts + front.patch_samples], axis=1)


def patches(samples: np.ndarray, hop_frames: int = 48, front: FrontEnd = GOLDEN, pad_end: bool = False) -> np.ndarray:
    """(n, 96, n_mels) float32 log-mel patches, patch i covering `patch_spans(n, hop_frames)[i]`.

    YAMNet's own scorer hops 48 frames (0.48 s); any hop >= 1 works. Only whole patches are cut;
    `pad_end` zero-pads the end first so that every sample is in a patch (at least one patch).
    The mel spectrum is computed once for the stream, then each patch is scaled by its own peak.
    """
    samples = _check_samples(samples)
    if hop_frames < 1:
        raise ValueError(f"patch hop {hop_frames} frames: must be at least 1")
    step = hop_frames * front.frame_hop
    if pad_end:
        short = max(0, len(samples) - front.patch_samples)
        missing = front.patch_samples + -(-short // step) * step - len(samples)
        samples = np.concatenate([samples, np.zeros(missing, np.float32)])
    n = patch_count(len(samples), hop_frames, front)
    if n == 0:
        return np.zeros((0, PATCH_FRAMES, front.n_mels), np.float32)
    mel = _spectra(front).mel(samples[: (n - 1) * step + front.patch_samples])
    view = np.lib.stride_tricks.as_strided(mel, (n, PATCH_FRAMES, front.n_mels),
                                           (hop_frames * mel.strides[0], *mel.strides), writeable=False)
    if front.peak_normalise:
        magnitude = np.abs(samples)
        spans = np.lib.stride_tricks.as_strided(magnitude, (n, front.patch_samples), (step * 4, 4), writeable=False)
        view = view * _gain(spans.max(axis=1), front)[:, None, None]
    return np.log(view + np.float32(front.log_offset))


# ---------------------------------------------------------------------------------------------
# Network


@dataclass(frozen=True)
class YamnetOutput:
    scores: np.ndarray  # (n, 521) sigmoid class scores
    embeddings: np.ndarray  # (n, 1024) the global-mean-pooled features the classifier reads


@dataclass(frozen=True)
class _Layer:
    """One conv layer, weights as integer-valued float32 in the layout the forward pass uses."""

    kind: str  # conv | depthwise | pointwise
    stride: int
    weight: np.ndarray  # conv (9, C); depthwise (3, 3, C); pointwise (Cin, Cout)
    bias: np.ndarray  # int32 bias as float32 (in accumulator units)
    multiplier: np.ndarray  # input scale x weight scale / output scale, per channel (requantisation)
    low: float  # clamp of the output in zero-point-free units: int8's range and ReLU6's, whichever is tighter
    high: float
    weight_scale: np.ndarray  # for the float path
    bias_real: np.ndarray
    output_scale: float
    _tiles: dict[int, np.ndarray] = field(default_factory=dict, compare=False)

    def tiled(self, width: int) -> np.ndarray:
        """Depthwise taps (9, width x C), each repeated along a flattened row of `width` pixels."""
        if width not in self._tiles:
            self._tiles[width] = np.tile(self.weight.reshape(9, 1, -1), (1, width, 1)).reshape(9, -1)
        return self._tiles[width]


def _same_pads(size: int, stride: int, kernel: int = 3) -> tuple[int, int]:
    """TensorFlow's SAME padding: the odd pixel goes after (stride 2 on even sizes pads 0 before, 1 after)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _padded_buffer(shape: tuple[int, ...], stride: int) -> np.ndarray:
    n, height, width, channels = shape
    (top, bottom), (left, right) = _same_pads(height, stride), _same_pads(width, stride)
    return np.zeros((n, height + top + bottom, width + left + right, channels), np.float32)


def _interior(padded: np.ndarray, shape: tuple[int, ...], stride: int) -> np.ndarray:
    top, left = _same_pads(shape[1], stride)[0], _same_pads(shape[2], stride)[0]
    return padded[:, top:top + shape[1], left:left + shape[2]]


def _padded(x: np.ndarray, stride: int) -> np.ndarray:
    padded = _padded_buffer(x.shape, stride)
    _interior(padded, x.shape, stride)[...] = x
    return padded


def _taps(padded: np.ndarray, stride: int, height: int, width: int) -> Iterator[tuple[int, int, np.ndarray]]:
    for ky in range(3):
        for kx in range(3):
            yield ky, kx, padded[:, ky:ky + stride * (height - 1) + 1:stride, kx:kx + stride * (width - 1) + 1:stride]


class YamnetModel:
    """YAMNet's forward pass on (n, 96, 64) log-mel patches; see the module docstring."""

    def __init__(self, tensors: dict[str, np.ndarray], meta: dict[str, Any], classes: tuple[str, ...],
                 quantised: bool = True, folder: Path | None = None):
        self.meta = meta
        self.classes = classes
        self.quantised = quantised
        self.folder = folder
        self.front = FrontEnd(**meta["front_end"])
        self._build(tensors, meta["layers"])

    @property
    def id(self) -> str:
        return f"yamnet@{self.meta['weights_sha256'][:12]}{'' if self.quantised else '-float'}"

    # -- loading -------------------------------------------------------------------------------

    @staticmethod
    def load(folder: str | Path = DEFAULT_FOLDER, quantised: bool = True) -> "YamnetModel":
        """A checked model folder; a missing, corrupt or mismatched one raises YamnetError."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        folder = Path(folder)
        fix = EXPORT_FIX.format(folder=folder)
        for name in (META_FILE, WEIGHTS_FILE, CLASS_MAP_FILE, LICENSE_FILE):
            if not (folder / name).is_file():
                raise YamnetError(f"YAMNet model {folder} lacks {folder / name}: {fix}")
        meta_path, weights_path = folder / META_FILE, folder / WEIGHTS_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except (ValueError, OSError) as exc:
            raise YamnetError(f"YAMNet {meta_path} is unreadable ({exc}): {fix}") from exc
        if not isinstance(meta, dict) or meta.get("format") != YAMNET_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise YamnetError(f"YAMNet {meta_path} has format {found}, this monitor reads {YAMNET_FORMAT}: {fix}")
        digest = hashlib.sha256(weights_path.read_bytes()).hexdigest()
        if digest != meta.get("weights_sha256"):
            raise YamnetError(f"YAMNet weights {weights_path} are corrupt or not the ones {meta_path} lists "
                              f"(sha256 {digest[:12]}, expected {str(meta.get('weights_sha256'))[:12]}): {fix}")
        try:
            tensors = load_file(weights_path)
        except (ValueError, OSError, SafetensorError) as exc:
            raise YamnetError(f"YAMNet weights {weights_path} are unreadable ({exc}): {fix}") from exc
        classes = _read_class_map(folder / CLASS_MAP_FILE, fix)
        try:
            model = YamnetModel(tensors, meta, classes, quantised, folder)
            out = model.run(np.zeros((1, PATCH_FRAMES, model.front.n_mels), np.float32))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise YamnetError(f"YAMNet weights {weights_path} do not fit {meta_path} ({exc!r}): {fix}") from exc
        if out.scores.shape != (1, NUM_CLASSES) or out.embeddings.shape != (1, EMBEDDING_DIM):
            raise YamnetError(f"YAMNet weights {weights_path} give {out.scores.shape} scores and {out.embeddings.shape} "
                              f"embeddings, not (1, {NUM_CLASSES}) and (1, {EMBEDDING_DIM}): {fix}")
        return model

    def _build(self, t: dict[str, np.ndarray], layers: list[dict[str, Any]]) -> None:
        def scalar(key: str) -> float:
            return float(t[key].reshape(-1)[0])

        def check_zero(key: str) -> None:
            if np.any(t[key] != 0):
                raise ValueError(f"{key} is not all zero (symmetric int8 weights expected)")

        self.input_scale, self.input_zero = scalar("input.scale"), scalar("input.zero_point")
        scale = self.input_scale
        self.layers: list[_Layer] = []
        for spec in layers:
            name, kind, stride = spec["name"], spec["kind"], int(spec["stride"])
            q = t[f"{name}.weight"].astype(np.float32)
            check_zero(f"{name}.weight_zero_point")
            if kind == "conv":  # (out, 3, 3, 1) → (9, out)
                weight = q.reshape(q.shape[0], 9).T.copy()
            elif kind == "depthwise":  # (1, 3, 3, C)
                weight = q[0].copy()
            elif kind == "pointwise":  # (out, 1, 1, in) → (in, out)
                weight = q.reshape(q.shape[0], q.shape[-1]).T.copy()
            else:
                raise ValueError(f"{name} has unknown kind {kind!r}")
            w_scale = t[f"{name}.weight_scale"].astype(np.float32)
            out_scale, out_zero = scalar(f"{name}.output_scale"), scalar(f"{name}.output_zero_point")
            bias = t[f"{name}.bias"].astype(np.float32)
            if bias.shape != (weight.shape[-1],) or w_scale.shape != (weight.shape[-1],):
                raise ValueError(f"{name}: bias {bias.shape} / scales {w_scale.shape} for {weight.shape[-1]} channels")
            # ReLU6 fused into the int8 range: codes below real 0 or above real 6 cannot occur.
            low, high = max(-128.0 - out_zero, 0.0), min(127.0 - out_zero, float(np.rint(6.0 / out_scale)))
            # In float32 and in this order, as XNNPACK computes it: a multiplier one ulp off flips rare ties.
            multiplier = (np.float32(scale) * w_scale) / np.float32(out_scale)
            self.layers.append(_Layer(kind, stride, weight, bias, multiplier, low, high, w_scale,
                                      (bias * np.float32(scale) * w_scale).astype(np.float32), out_scale))
            scale = out_scale
        if self.layers[0].kind != "conv" or self.layers[0].weight.shape[0] != 9:
            raise ValueError("the first layer must be a 3x3 conv over one input channel")
        # Global mean over the last feature map, requantised to its own scale.
        self.mean_in_scale = scale
        self.mean_scale, mean_zero = scalar("layer28.output_scale"), scalar("layer28.output_zero_point")
        self.mean_low, self.mean_high = -128.0 - mean_zero, 127.0 - mean_zero
        # Classifier: dense 1024 → 521 (per-tensor weight scale), logits requantised, then a sigmoid.
        fc = t["layer29.weight"].astype(np.float32)  # (521, 1024)
        check_zero("layer29.weight_zero_point")
        fc_scale = float(t["layer29.weight_scale"].reshape(-1)[0])
        self.fc_weight = np.ascontiguousarray(fc.T)
        self.fc_bias = t["layer29.bias"].astype(np.float32)
        self.fc_bias_real = (self.fc_bias * self.mean_scale * fc_scale).astype(np.float32)
        self.fc_scale = np.float32(fc_scale)
        self.logit_scale, self.logit_zero = scalar("layer29.output_scale"), scalar("layer29.output_zero_point")
        self.fc_multiplier = (np.float32(self.mean_scale) * np.float32(fc_scale)) / np.float32(self.logit_scale)
        # The int8 sigmoid is a table over the 256 logit codes, as TFLite and XNNPACK build it.
        out_scale, out_zero = scalar("output.scale"), scalar("output.zero_point")
        codes = np.arange(-128, 128, dtype=np.float64)
        probability = 1.0 / (1.0 + np.exp(-(codes - self.logit_zero) * self.logit_scale))
        table = np.clip(np.rint(probability / out_scale) + out_zero, -128, 127)
        self.sigmoid_table = ((table - out_zero) * out_scale).astype(np.float32)
        if self.fc_weight.shape != (EMBEDDING_DIM, NUM_CLASSES) or len(self.classes) != NUM_CLASSES:
            raise ValueError(f"classifier {self.fc_weight.shape} with {len(self.classes)} class names, "
                             f"expected ({EMBEDDING_DIM}, {NUM_CLASSES})")

    # -- inference -----------------------------------------------------------------------------

    def run(self, patches: np.ndarray, batch: int = 32) -> YamnetOutput:
        """Scores and embeddings of (n, 96, 64) log-mel patches, `batch` patches at a time."""
        patches = np.asarray(patches, np.float32)
        if patches.ndim == 2:
            patches = patches[None]
        if patches.ndim != 3 or patches.shape[1:] != (PATCH_FRAMES, self.front.n_mels):
            raise ValueError(f"YAMNet takes (n, {PATCH_FRAMES}, {self.front.n_mels}) patches, got {patches.shape}")
        parts = [self._forward(patches[i:i + batch]) for i in range(0, len(patches), batch)]
        if not parts:
            return YamnetOutput(np.zeros((0, NUM_CLASSES), np.float32), np.zeros((0, EMBEDDING_DIM), np.float32))
        return YamnetOutput(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))

    def scores(self, patches: np.ndarray) -> np.ndarray:
        return self.run(patches).scores

    def embeddings(self, patches: np.ndarray) -> np.ndarray:
        return self.run(patches).embeddings

    def classify(self, samples: np.ndarray, hop_frames: int = 48, pad_end: bool = False) -> YamnetOutput:
        """Samples (16 kHz, [-1, 1]) → one output per patch; patch i covers `patch_spans(n, hop_frames)[i]`."""
        return self.run(patches(samples, hop_frames, self.front, pad_end))

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.quantised:
            # Zero-point-free integer codes: padding with zeros is padding with the zero point.
            x = np.clip(np.rint(x / np.float32(self.input_scale)), -128 - self.input_zero, 127 - self.input_zero)
        # Each layer that pads gets its input already padded: the layer before writes into the interior.
        h = _padded(x[..., None], self.layers[0].stride)
        for i, layer in enumerate(self.layers):
            after = self.layers[i + 1] if i + 1 < len(self.layers) else None
            h = self._layer(layer, h, 0 if after is None or after.kind == "pointwise" else after.stride)
        if self.quantised:
            total = h.sum(axis=(1, 2), dtype=np.float32)
            pooled = np.clip(np.rint(total * np.float32(self.mean_in_scale / (self.mean_scale * h.shape[1] * h.shape[2]))),
                             self.mean_low, self.mean_high)
            logits = np.rint((pooled @ self.fc_weight + self.fc_bias) * self.fc_multiplier)
            codes = np.clip(logits + self.logit_zero, -128, 127).astype(np.int64) + 128
            return self.sigmoid_table[codes], pooled * np.float32(self.mean_scale)
        pooled = h.mean(axis=(1, 2), dtype=np.float32)
        logits = (pooled @ self.fc_weight) * self.fc_scale + self.fc_bias_real
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32), pooled

    def _layer(self, layer: _Layer, h: np.ndarray, pad_for: int) -> np.ndarray:
        """One layer on `h` (padded already unless pointwise); its output padded for a next layer of
        stride `pad_for` (0: unpadded)."""
        n, height, width, channels = h.shape
        if layer.kind == "pointwise":
            acc = (h.reshape(-1, channels) @ layer.weight).reshape(n, height, width, -1)
        else:
            s = layer.stride
            out_h, out_w = (height - 3) // s + 1, (width - 3) // s + 1
            if layer.kind == "conv":  # one input channel: im2col of the 3x3 taps, then one matmul
                plane = np.ascontiguousarray(h[..., 0])
                sn, sy, sx = plane.strides
                cols = np.lib.stride_tricks.as_strided(plane, (n, out_h, out_w, 3, 3), (sn, sy * s, sx * s, sy, sx),
                                                       writeable=False)
                acc = (cols.reshape(-1, 9) @ layer.weight).reshape(n, out_h, out_w, -1)
            elif s == 1:  # rows flattened to (width x channels): each tap is a long contiguous shift
                rows = h.reshape(n, height, width * channels)
                tiled = layer.tiled(out_w)
                acc = np.multiply(rows[:, 0:out_h, 0:out_w * channels], tiled[0])
                scratch = np.empty_like(acc)
                for k in range(1, 9):
                    ky, kx = divmod(k, 3)
                    np.multiply(rows[:, ky:ky + out_h, kx * channels:(kx + out_w) * channels], tiled[k], out=scratch)
                    acc += scratch
                acc = acc.reshape(n, out_h, out_w, channels)
            else:
                taps = _taps(h, s, out_h, out_w)
                _, _, first = next(taps)
                acc = np.multiply(first, layer.weight[0, 0])
                scratch = np.empty_like(acc)
                for ky, kx, tap in taps:
                    np.multiply(tap, layer.weight[ky, kx], out=scratch)
                    acc += scratch
        out = acc
        if pad_for:
            padded = _padded_buffer(acc.shape, pad_for)
            out = _interior(padded, acc.shape, pad_for)
        if self.quantised:
            acc += layer.bias
            acc *= layer.multiplier
            np.rint(acc, out=acc)
            np.clip(acc, layer.low, layer.high, out=out)
        else:
            acc *= layer.weight_scale
            acc += layer.bias_real
            np.clip(acc, 0.0, 6.0, out=out)  # ReLU6
        return padded if pad_for else out


def _read_class_map(path: Path, fix: str) -> tuple[str, ...]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        names = tuple(row["display_name"] for row in sorted(rows, key=lambda r: int(r["index"])))
    except (OSError, KeyError, ValueError, csv.Error) as exc:
        raise YamnetError(f"YAMNet class map {path} is unreadable ({exc!r}): {fix}") from exc
    if len(names) != NUM_CLASSES:
        raise YamnetError(f"YAMNet class map {path} names {len(names)} classes, not {NUM_CLASSES}: {fix}")
    return names

