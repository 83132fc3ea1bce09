"""Stand-ins for the gated HeAR weights, built with the published contract (see ../shared/hear/HEAR.md).

Shared by the test_hear_* modules; nothing here is a fixture of conftest.py.
"""
from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CRIES = SHARED / "data" / "cries"
GOLDEN = SHARED / "hear" / "frontend_golden.npz"
REVISION = "0123456789abcdef0123456789abcdef01234567"  # a made-up commit for stand-in snapshots
WINDOW = 32_000

# HEAR.md's transformers ViTConfig for google/hear-pytorch.
HEAR_VIT = dict(
    image_size=(192, 128), patch_size=16, num_channels=1, hidden_size=1024, num_hidden_layers=24,
    num_attention_heads=16, intermediate_size=4096, hidden_act="gelu_fast", layer_norm_eps=1e-6, qkv_bias=True,
    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pooler_act="linear", pooler_output_size=512,
)
# Same shape of everything but depth and width, for fast tests of the key namings.
SMALL_VIT = {**HEAR_VIT, "hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 256}


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: these checks need the project's shared data beside the checkout (../shared)")
    return path


def cry_clips(count: int) -> np.ndarray:
    """(count, 32000) float32: the first 2 s of real infant cries, half 16 kHz (corvin), half 8 kHz (donateacry)."""
    import soundfile as sf
    import soxr

    with open(require(CRIES / "index.csv"), newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["cry"] == "1" and float(r["duration_s"]) >= 2.5]
    picked = [r for source in ("corvin", "donateacry") for r in sorted(
        (r for r in rows if r["source"] == source), key=lambda r: r["path"])[: (count + 1) // 2]][:count]
    clips = []
    for row in picked:
        audio, rate = sf.read(CRIES / row["path"], dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
        if rate != 16_000:
            audio = soxr.resample(audio, rate, 16_000)
        clips.append(audio[:WINDOW])
    return np.stack(clips).astype(np.float32)


def hf_vit(config: dict[str, Any], seed: int = 0) -> Any:
    """transformers ViTModel with every tensor random, biases and LayerNorms included, so a misplaced one shows."""
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    return randomize(ViTModel(ViTConfig(**config)).eval(), norm_marker="layernorm")


def randomize(model: Any, norm_marker: str) -> Any:
    """Every tensor random (LayerNorms near identity, the rest N(0, 0.02)), so a misplaced one shows."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if norm_marker in name:
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(param))
            else:
                param.normal_(0.0, 0.02)
    return model


# Per-layer tensor names: 5.x (what transformers 5 saves) → 4.x (what google/hear-pytorch was saved with).
_LAYER_5X_TO_4X = {
    "attention.q_proj": "attention.attention.query",
    "attention.k_proj": "attention.attention.key",
    "attention.v_proj": "attention.attention.value",
    "attention.o_proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
    "layernorm_before": "layernorm_before",
    "layernorm_after": "layernorm_after",
}
_LAYER_KEY = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")


def naming_of(state: dict[str, Any]) -> str:
    if any(k.startswith("encoder.layer.") for k in state):
        return "4.x"
    if any(k.startswith("layers.") for k in state):
        return "5.x"
    raise AssertionError(f"unknown ViT naming: {sorted(state)[:5]}")


def renamed(state: dict[str, Any], naming: str) -> dict[str, Any]:
    """The same tensors under the 4.x (published) or 5.x naming, whichever transformers saved."""
    if naming_of(state) == naming:
        return dict(state)
    parts = _LAYER_5X_TO_4X if naming == "4.x" else {v: k for k, v in _LAYER_5X_TO_4X.items()}
    prefix = "encoder.layer" if naming == "4.x" else "layers"
    out = {}
    for key, tensor in state.items():
        match = _LAYER_KEY.match(key)
        out[f"{prefix}.{match[1]}.{parts[match[2]]}.{match[3]}" if match else key] = tensor
    assert naming_of(out) == naming and len(out) == len(state)
    return out


def write_torch_weights(folder: Path, model: Any, naming: str) -> Path:
    """model.safetensors (in the given naming) + config.json, as google/hear-pytorch holds them."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in renamed(model.state_dict(), naming).items()}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    (folder / "config.json").write_text(model.config.to_json_string(), encoding="utf-8")
    return folder


def fill_hub_cache(cache_dir: Path, repo: str, source: Path, revision: str = REVISION) -> Path:
    """Lay `source`'s files out as huggingface_hub's cache does: blobs, snapshots/<commit> symlinks, refs/main."""
    storage = cache_dir / f"models--{repo.replace('/', '--')}"
    snapshot = storage / "snapshots" / revision
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source)
        blob = storage / "blobs" / f"{revision[:8]}-{'-'.join(relative.parts)}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            os.link(path, blob)  # the hub cache's blob + symlink layout, without copying 1.2 GB
        link = snapshot / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(revision, encoding="utf-8")
    return snapshot


def save_tf_standin(folder: Path, signature: str = "serving_default", input_key: str = "x",
                    dim: int = 512, seed: int = 0) -> Path:
    """A tiny SavedModel with google/hear's serving contract: x (N, 32000) float32 → output_0 (N, dim)."""
    import tensorflow as tf

    class Standin(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(tf.random.stateless_normal((64, dim), seed=(seed, 1)))

        @tf.function(input_signature=[tf.TensorSpec((None, WINDOW), tf.float32, name=input_key)])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            # Like google/hear, scale the whole batch to [-1, 1], then a cheap deterministic projection.
            x = 2 * (x - tf.reduce_min(x)) / (tf.reduce_max(x) - tf.reduce_min(x) + 1e-9) - 1
            energy = tf.reduce_mean(tf.abs(tf.reshape(x, (-1, 64, WINDOW // 64))), axis=2)
            return {"output_0": tf.matmul(energy, self.weights)}

    module = Standin()
    tf.saved_model.save(module, str(folder), signatures={signature: module.serve})
    return folder


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    """A config.toml with the given tables (string, number and bool values only)."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
