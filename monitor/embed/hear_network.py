"""HeAR's network in pure torch: the PCEN mel front end, the ViT-L/16 encoder, and the published weights' key namings.

The torch backend of `monitor.embed.hear` runs it; that module finds the weights.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from monitor.embed.base import EmbedderError
from monitor.messages import SAMPLE_RATE, WINDOW_SAMPLES

# Front end constants (preprocess_audio in Google-Health/hear, python/data_processing/audio_utils.py).
FRAME = 400
HOP = 160
N_FFT = 400
N_MELS = 128
N_FRAMES = -(-WINDOW_SAMPLES // HOP)  # TF-style pad_end: 200 frames
PAD_END = (N_FRAMES - 1) * HOP + FRAME - WINDOW_SAMPLES
PCEN_ALPHA = 0.8
PCEN_SMOOTHING = 0.04
PCEN_DELTA = 2.0
PCEN_ROOT = 2.0
PCEN_FLOOR = 1e-8
SPEC_SIZE = (192, 128)  # (time, mel): the ViT's image size


_MelT = TypeVar("_MelT", np.ndarray, np.float64)  # an array of frequencies, or one (the band edges)


def _hz_to_mel(hz: _MelT) -> _MelT:
    return 1127.0 * np.log1p(hz / 700.0)  # HTK, as tf.signal.linear_to_mel_weight_matrix


def mel_matrix() -> np.ndarray:
    """(201, 128) triangular filters, 0–8 kHz, built like tf.signal.linear_to_mel_weight_matrix (DC row zero)."""
    bins = N_FFT // 2 + 1
    bin_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2, bins)[1:])[:, None]
    edges = np.linspace(_hz_to_mel(np.float64(0.0)), _hz_to_mel(np.float64(SAMPLE_RATE / 2)), N_MELS + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bin_mel - lower) / (center - lower)
    falling = (upper - bin_mel) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.pad(weights, ((1, 0), (0, 0))).astype(np.float32)


def ema_matrix(frames: int = N_FRAMES, smoothing: float = PCEN_SMOOTHING) -> np.ndarray:
    """Lower-triangular W with W @ E == PCEN's EMA (state starts at frame 0): one matmul instead of a 200-step loop."""
    t = np.arange(frames)
    lag = t[:, None] - t[None, :]
    weights = np.where(lag >= 0, smoothing * (1.0 - smoothing) ** np.maximum(lag, 0), 0.0)
    weights[:, 0] = (1.0 - smoothing) ** t  # M[0] = E[0], so frame 0 carries the undecayed initial state
    return weights.astype(np.float32)


class HearFrontend(nn.Module):
    """Waveform (N, <=32000) at 16 kHz → PCEN mel spectrogram (N, 1, 192, 128).

    Unlike the reference, which min-max scales the whole batch tensor at once (so a clip's
    embedding depends on its batch-mates), each clip is scaled on its own.
    """

    # Buffers registered in __init__; declared so they type as tensors, not nn.Module.__getattr__'s Tensor | Module.
    window: torch.Tensor
    mel: torch.Tensor
    ema: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("window", torch.hann_window(FRAME, periodic=True), persistent=False)
        self.register_buffer("mel", torch.from_numpy(mel_matrix()), persistent=False)
        self.register_buffer("ema", torch.from_numpy(ema_matrix()), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.ndim != 2 or audio.shape[1] > WINDOW_SAMPLES:
            raise EmbedderError(
                f"HeAR front end takes (N, <={WINDOW_SAMPLES}) samples at 16 kHz, got {tuple(audio.shape)}: "
                "window long audio into 2 s clips first"
            )
        x = F.pad(audio.to(torch.float32), (0, WINDOW_SAMPLES - audio.shape[1]))
        low, high = torch.aminmax(x, dim=1, keepdim=True)
        span = high - low
        # A constant clip has no range; the reference would divide by zero (NaN), we call it silence.
        scaled = 2.0 * (x - low) / span.clamp_min(torch.finfo(torch.float32).tiny) - 1.0
        x = F.pad(torch.where(span > 0, scaled, torch.zeros_like(scaled)), (0, PAD_END))
        stft = torch.stft(x, N_FFT, HOP, FRAME, self.window, center=False, return_complex=True)
        energy = stft.abs().square().transpose(1, 2) @ self.mel  # (N, 200, 128)
        smooth = self.ema @ energy
        pcen = (energy / (PCEN_FLOOR + smooth) ** PCEN_ALPHA + PCEN_DELTA) ** (1 / PCEN_ROOT)
        pcen = pcen - PCEN_DELTA ** (1 / PCEN_ROOT)
        # Bilinear, half-pixel centres, no antialias: what tf.image.resize does.
        return F.interpolate(pcen.unsqueeze(1), size=SPEC_SIZE, mode="bilinear", align_corners=False)


def frontend(batch: np.ndarray) -> np.ndarray:
    """numpy (N, <=32000) float32 → numpy (N, 1, 192, 128) float32; short clips are right-padded with zeros."""
    with torch.inference_mode():
        return HearFrontend()(torch.as_tensor(np.asarray(batch, dtype=np.float32))).numpy()


_TANH_GELUS = ("gelu_fast", "gelu_new", "gelu_pytorch_tanh")


@dataclass(frozen=True)
class HearConfig:
    """The encoder's shape; the defaults are HeAR's (google/hear-pytorch config.json)."""

    hidden_size: int = 1024
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    layer_norm_eps: float = 1e-6
    pooler_output_size: int = 512
    pooler_act: str = "linear"
    image_size: tuple[int, int] = SPEC_SIZE
    patch_size: int = 16
    num_channels: int = 1

    @property
    def num_patches(self) -> int:
        return (self.image_size[0] // self.patch_size) * (self.image_size[1] // self.patch_size)

    @classmethod
    def from_hf(cls, data: Mapping[str, Any]) -> "HearConfig":
        """Read a transformers ViTConfig json; raise ValueError for anything this encoder does not implement."""
        if data.get("model_type", "vit") != "vit":
            raise ValueError(f"model_type is {data.get('model_type')!r}, not 'vit'")
        act = data.get("hidden_act", "gelu")
        if act not in _TANH_GELUS:
            raise ValueError(f"hidden_act {act!r} is not a tanh-approximated GELU ({', '.join(_TANH_GELUS)})")
        if not data.get("qkv_bias", True):
            raise ValueError("qkv_bias false is not supported")
        size = data.get("image_size", 224)
        image_size = (size, size) if isinstance(size, int) else tuple(size)
        hidden = int(data.get("hidden_size", 768))
        config = cls(
            hidden_size=hidden,
            num_hidden_layers=int(data.get("num_hidden_layers", 12)),
            num_attention_heads=int(data.get("num_attention_heads", 12)),
            intermediate_size=int(data.get("intermediate_size", 3072)),
            layer_norm_eps=float(data.get("layer_norm_eps", 1e-12)),
            # transformers' own defaults apply when a key is absent, so match them.
            pooler_output_size=int(data.get("pooler_output_size") or hidden),
            pooler_act=str(data.get("pooler_act", "tanh")),
            image_size=image_size,
            patch_size=int(data.get("patch_size", 16)),
            num_channels=int(data.get("num_channels", 3)),
        )
        if config.pooler_act not in ("linear", "tanh"):
            raise ValueError(f"pooler_act {config.pooler_act!r} is not supported (linear or tanh)")
        if config.image_size != SPEC_SIZE or config.num_channels != 1:
            raise ValueError(f"image {config.image_size}x{config.num_channels}ch does not fit the HeAR front end "
                             f"{SPEC_SIZE}x1ch")
        if hidden % config.num_attention_heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by {config.num_attention_heads} heads")
        return config



class _Block(nn.Module):
    """Pre-norm transformer layer, as transformers' ViTLayer; q, k, v fused into one matmul."""

    def __init__(self, config: HearConfig) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.heads = config.num_attention_heads
        self.norm1 = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(hidden, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, tokens, hidden = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, tokens, hidden)
        x = x + self.proj(attended)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)), approximate="tanh"))


class HearViT(nn.Module):
    """ViT encoder: spectrogram (N, 1, 192, 128) → pooler output (N, pooler_output_size)."""

    def __init__(self, config: HearConfig = HearConfig()) -> None:
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.patch = nn.Conv2d(config.num_channels, hidden, config.patch_size, config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.position = nn.Parameter(torch.zeros(1, config.num_patches + 1, hidden))
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.pooler = nn.Linear(hidden, config.pooler_output_size)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.patch(spec).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1).to(x.dtype), x], dim=1) + self.position
        for block in self.blocks:
            x = block(x)
        # LayerNorm is per token and the pooler reads only CLS, so normalising CLS alone is exact.
        pooled = self.pooler(self.norm(x[:, 0]))
        return torch.tanh(pooled) if self.config.pooler_act == "tanh" else pooled


# Published names (transformers ViTModel) → ours. 4.x is what google/hear-pytorch was saved with;
# transformers 5.x saves the second naming and loads both.
_TOP_LEVEL = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "position",
    "embeddings.patch_embeddings.projection.weight": "patch.weight",
    "embeddings.patch_embeddings.projection.bias": "patch.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
    "pooler.dense.weight": "pooler.weight",
    "pooler.dense.bias": "pooler.bias",
}
_LAYER_PARTS = {
    # 4.x
    "attention.attention.query": "q",
    "attention.attention.key": "k",
    "attention.attention.value": "v",
    "attention.output.dense": "proj",
    "intermediate.dense": "fc1",
    "output.dense": "fc2",
    # 5.x
    "attention.q_proj": "q",
    "attention.k_proj": "k",
    "attention.v_proj": "v",
    "attention.o_proj": "proj",
    "mlp.fc1": "fc1",
    "mlp.fc2": "fc2",
    # both
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
}
_LAYER_KEY = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")
_IGNORED = {"embeddings.mask_token"}  # present when saved with use_mask_token; unused at inference


def convert_state_dict(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ViTModel tensors (4.x or 5.x names) → HearViT state dict; ValueError on unknown names."""
    converted: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for name, tensor in tensors.items():
        if name in _IGNORED:
            continue
        match = _LAYER_KEY.match(name)
        part = _LAYER_PARTS.get(match.group(2)) if match else None
        target = _TOP_LEVEL.get(name) or (f"blocks.{match.group(1)}.{part}.{match.group(3)}" if match and part else None)
        if target is None:
            unknown.append(name)
        elif target in converted:
            raise ValueError(f"tensor {name} appears under both namings")
        else:
            converted[target] = tensor
    if unknown:
        raise ValueError(f"{len(unknown)} tensors with unknown names, e.g. {', '.join(sorted(unknown)[:3])}")
    return _fuse_qkv(converted)


def _fuse_qkv(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    fused = dict(state)
    blocks = {key.split(".")[1] for key in state if key.startswith("blocks.")}
    for index in blocks:
        for kind in ("weight", "bias"):
            popped = [fused.pop(f"blocks.{index}.{p}.{kind}", None) for p in "qkv"]
            parts = [p for p in popped if p is not None]
            if len(parts) < len(popped):
                raise ValueError(f"layer {index} lacks some of its query/key/value {kind} tensors")
            fused[f"blocks.{index}.qkv.{kind}"] = torch.cat(parts, dim=0)
    return fused


def load_vit(tensors: Mapping[str, torch.Tensor], config: HearConfig) -> HearViT:
    """Build the encoder and load published tensors into it; ValueError when they do not fit the config."""
    model = HearViT(config)
    state = convert_state_dict(tensors)
    expected = model.state_dict()
    missing = sorted(expected.keys() - state.keys())
    extra = sorted(state.keys() - expected.keys())
    if missing or extra:
        raise ValueError(f"tensors do not match a {config.num_hidden_layers}-layer encoder "
                         f"(missing {missing[:3]}, unexpected {extra[:3]})")
    wrong = [k for k, v in state.items() if v.shape != expected[k].shape]
    if wrong:
        raise ValueError(f"tensor {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, "
                         f"expected {tuple(expected[wrong[0]].shape)}")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    return model.eval()


# Dynamic int8 quantises activations per tensor with 7 bits on x86 (reduce_range). Only the layers
# fed straight by a LayerNorm keep the result within cosine 0.999 of fp32 (measured, docs/hear.md);
# quantising attention-output and fc2 as well drops it to about 0.9989.
INT8_LAYERS = ("qkv", "fc1")


def quantize_int8(model: HearViT) -> nn.Module:
    """Dynamic int8 (per-channel weights) for the qkv and fc1 Linears; the rest stays fp32. CPU only."""
    from torch.ao import quantization

    spec = {name: quantization.per_channel_dynamic_qconfig for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in INT8_LAYERS}
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao but still works
        warnings.simplefilter("ignore")
        return quantization.quantize_dynamic(model, spec)
