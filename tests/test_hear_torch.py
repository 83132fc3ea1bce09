"""The torch HeAR backend against transformers' ViTModel with random weights, on real cry audio.

No copy of google/hear-pytorch exists here, so a ViTModel built from HEAR.md's config stands in
for it: every tensor is random (biases and LayerNorms too), so a misplaced tensor shows.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.config import HearSettings
from monitor.embed.base import Embedder, EmbedderError
from monitor.embed.hear import HearWeights, TorchHear, _read_vit, load_hear
from tests.hear_standins import (
    HEAR_VIT,
    REVISION,
    SMALL_VIT,
    cry_clips,
    fill_hub_cache,
    hf_vit,
    naming_of,
    renamed,
    write_torch_weights,
)

torch = pytest.importorskip("torch")
pytest.importorskip("transformers", reason="transformers (a dev extra) builds the reference ViTModel")
from monitor.embed.hear_network import frontend  # noqa: E402  (after the importorskip that guards torch)


def reference(model: Any, clips: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(pixel_values=torch.from_numpy(frontend(clips))).pooler_output.numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_matches(ours: np.ndarray, expected: np.ndarray, atol: float = 1e-3) -> None:
    assert ours.shape == expected.shape and ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= atol, np.abs(ours - expected).max()
    assert cosine(ours, expected).min() >= 0.99999, cosine(ours, expected)


def settings(**values: Any) -> HearSettings:
    return HearSettings(**{"backend": "torch", "revision": REVISION, **values})


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    return cry_clips(4)


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, clips: np.ndarray) -> dict[str, Any]:
    """The full HEAR.md ViT-L/16 (303 M parameters), saved with the published 4.x names, and its outputs."""
    model = hf_vit(HEAR_VIT, seed=1)
    assert sum(p.numel() for p in model.parameters()) == 303_199_744  # HEAR.md's count: the config is right
    folder = write_torch_weights(tmp_path_factory.mktemp("hear-pytorch"), model, "4.x")
    return {"folder": folder, "expected": reference(model, clips)}


@pytest.fixture(scope="module")
def full_fp32(full: dict[str, Any], clips: np.ndarray) -> np.ndarray:
    embedder = load_hear(settings(backend="auto", model_dir=str(full["folder"])))
    assert isinstance(embedder, Embedder)
    assert (embedder.id, embedder.dim) == (f"hear-torch@{REVISION[:12]}", 512)
    return embedder.embed(clips)


@pytest.mark.slow
def test_full_model_from_model_dir_matches_transformers(full: dict[str, Any], full_fp32: np.ndarray) -> None:
    assert_matches(full_fp32, full["expected"])


@pytest.mark.slow
def test_full_model_from_offline_hub_cache(full: dict[str, Any], clips: np.ndarray, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    fill_hub_cache(cache, "google/hear-pytorch", full["folder"])
    tf_only = tmp_path / "tf"  # a google/hear snapshot too: auto must still prefer torch
    tf_only.mkdir()
    (tf_only / "saved_model.pb").write_bytes(b"not used")
    fill_hub_cache(cache, "google/hear", tf_only)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = load_hear(settings(backend="auto", cache_dir=str(cache)))
    assert embedder.id == f"hear-torch@{REVISION[:12]}"
    assert_matches(embedder.embed(clips), full["expected"])


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "int8", "bf16-weights"])
def test_reduced_precision_stays_close_to_fp32(full: dict[str, Any], full_fp32: np.ndarray, clips: np.ndarray,
                                               precision: str) -> None:
    if precision == "bf16-weights":  # what bf16 means on CUDA (weights stored in bf16), run on the CPU
        weights = HearWeights("torch", full["folder"], REVISION)
        embedder = TorchHear.from_vit(_read_vit(weights), weights, "bf16", "cpu", bf16_weights=True)
        assert all(p.dtype == torch.bfloat16 for p in embedder._vit.parameters())
    else:
        embedder = load_hear(settings(model_dir=str(full["folder"]), precision=precision, device="cpu"))
    vectors = embedder.embed(clips)
    similarity = cosine(vectors, full_fp32)
    print(f"{precision}: cosine to fp32 min {similarity.min():.6f} mean {similarity.mean():.6f}")
    assert similarity.min() >= 0.999, similarity
    assert np.abs(vectors - full_fp32).max() > 1e-5  # the reduced-precision path really ran


@pytest.fixture(scope="module")
def small() -> Any:
    return hf_vit(SMALL_VIT, seed=2)


@pytest.mark.parametrize("naming", ["4.x", "5.x"])
def test_both_key_namings_load(small: Any, clips: np.ndarray, tmp_path: Path, naming: str) -> None:
    folder = write_torch_weights(tmp_path, small, naming)
    embedder = load_hear(settings(model_dir=str(folder)))
    # 2 layers match to ~3e-7; exact instead of tanh GELU would already be off by ~3e-5.
    assert_matches(embedder.embed(clips), reference(small, clips), atol=5e-6)


def test_installed_transformers_naming_and_our_4x_renaming_agree(small: Any, tmp_path: Path) -> None:
    from safetensors import safe_open

    small.save_pretrained(tmp_path)
    with safe_open(tmp_path / "model.safetensors", framework="pt") as handle:
        saved = set(handle.keys())
    # Whichever naming this transformers writes, our renaming must produce exactly its 4.x names.
    if naming_of(dict.fromkeys(saved)) == "4.x":
        assert saved == set(renamed(small.state_dict(), "4.x"))
    assert naming_of(dict.fromkeys(renamed(small.state_dict(), "4.x"))) == "4.x"


def test_save_pretrained_folder_loads(small: Any, clips: np.ndarray, tmp_path: Path) -> None:
    small.save_pretrained(tmp_path)  # exactly the hub repository's layout: config.json + model.safetensors
    embedder = load_hear(settings(model_dir=str(tmp_path)))
    assert_matches(embedder.embed(clips), reference(small, clips), atol=5e-6)


def test_vectors_do_not_depend_on_batch_mates_or_gain(small: Any, clips: np.ndarray, tmp_path: Path) -> None:
    embedder = load_hear(settings(model_dir=str(write_torch_weights(tmp_path, small, "4.x"))))
    alone = embedder.embed(clips[:1])
    together = embedder.embed(np.concatenate([clips[:1], 0.01 * clips[1:2], clips[:1] * 0.05]))
    np.testing.assert_allclose(together[0], alone[0], atol=1e-4)
    np.testing.assert_allclose(together[2], alone[0], atol=1e-3)  # the same clip at 5 % gain
    assert embedder.embed(np.zeros((0, 32_000), np.float32)).shape == (0, 512)


def one_line_error(settings_: HearSettings, match: str) -> str:
    with pytest.raises(EmbedderError, match=match) as info:
        load_hear(settings_)
    message = str(info.value)
    assert "\n" not in message and ": " in message
    return message


def test_unknown_tensor_names_are_refused(small: Any, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder = write_torch_weights(tmp_path, small, "4.x")
    state = renamed(small.state_dict(), "4.x")
    prefix = "encoder.layer.0.attention.attention"
    state[f"{prefix}.qkv.weight"] = state.pop(f"{prefix}.query.weight")
    save_file({k: v.contiguous() for k, v in state.items()}, folder / "model.safetensors")
    one_line_error(settings(model_dir=str(folder)), r"does not hold HeAR ViT weights .*unknown names.*pull hear")


def test_missing_layer_is_refused(small: Any, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder = write_torch_weights(tmp_path, small, "5.x")
    state = {k: v.contiguous() for k, v in small.state_dict().items() if not k.startswith("layers.1.")}
    save_file(state, folder / "model.safetensors")
    one_line_error(settings(model_dir=str(folder)), r"do not match a 2-layer encoder")


def test_unsupported_config_is_refused(small: Any, tmp_path: Path) -> None:
    folder = write_torch_weights(tmp_path, small, "4.x")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    one_line_error(settings(model_dir=str(folder)), r"config.json does not describe the HeAR ViT .*relu")


def test_window_contract_is_enforced(small: Any, tmp_path: Path) -> None:
    embedder = load_hear(settings(model_dir=str(write_torch_weights(tmp_path, small, "4.x"))))
    with pytest.raises(EmbedderError, match=r"\(N, 32000\)"):
        embedder.embed(np.zeros((2, 16_000), np.float32))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the error on a machine without a GPU")
def test_cuda_without_gpu_is_an_error(small: Any, tmp_path: Path) -> None:
    folder = write_torch_weights(tmp_path, small, "4.x")
    one_line_error(settings(model_dir=str(folder), device="cuda"), r"no CUDA GPU")
    one_line_error(settings(model_dir=str(folder), device="cuda", precision="int8"), r"CUDA|CPU-only")


def test_importing_the_backend_module_loads_neither_torch_nor_tensorflow() -> None:
    code = ("import sys, monitor.embed.hear, monitor.model_cmd; "
            "print(sorted(m for m in ('torch', 'tensorflow', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
