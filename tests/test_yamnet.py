"""YAMNet in numpy: the front end against Coral's golden spectra, the port against tf.lite's interpreter,
and the shipped model folder (which needs neither ../shared nor TensorFlow)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.audio import load_audio
from monitor.detect.yamnet import (
    CRY_CLASS,
    DEFAULT_FOLDER,
    EMBEDDING_DIM,
    GOLDEN,
    NUM_CLASSES,
    PATCH_FRAMES,
    PATCH_SAMPLES,
    PUBLISHED,
    WEIGHTS_FILE,
    YamnetError,
    YamnetModel,
    log_mel,
    patch_count,
    patch_spans,
    patches,
)
from tests.conftest import SHARED, cry_path, pick

YAMNET = SHARED / "models" / "yamnet"
TFLITE = YAMNET / "yamnet_spectra_in.tflite"
NO_GOLDEN = f"needs Coral's YAMNet golden vectors in {YAMNET} (present on CryWatch development machines and CI only)"
# The port reproduces the int8 arithmetic as XNNPACK does it: scores came out bit-identical on every patch
# tried (94 real ones). One sigmoid step (1/256) of slack covers a tie rounded the other way elsewhere.
SCORE_TOLERANCE = 1 / 256


@pytest.fixture(scope="module")
def model() -> YamnetModel:
    return YamnetModel.load()


@pytest.fixture(scope="module")
def golden() -> tuple[np.ndarray, np.ndarray]:
    """(samples in [-1, 1], the 96 x 64 golden spectra)."""
    if not (YAMNET / "yamnet_test_spectra.bin").is_file():
        pytest.skip(NO_GOLDEN)
    audio = np.fromfile(YAMNET / "yamnet_test_audio.bin", "<i2").astype(np.float32) / 32768
    return audio, np.fromfile(YAMNET / "yamnet_test_spectra.bin", "<f4").reshape(PATCH_FRAMES, 64)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16_000)) * 0.1).astype(np.float32)


# -- front end ---------------------------------------------------------------------------------


def test_front_end_matches_the_golden_spectra(golden):
    audio, spectra = golden
    assert len(audio) == PATCH_SAMPLES
    assert np.abs(log_mel(audio) - spectra).max() < 1e-4  # 4e-6 observed: float32 against the generator's float64
    assert np.abs(patches(audio)[0] - spectra).max() < 1e-4
    # YAMNet's published recipe is not what the golden vectors hold (the README's "off by about log(4)").
    assert np.abs(log_mel(audio, PUBLISHED) - spectra).mean() > 1.0


def test_each_patch_is_the_front_end_of_its_own_span():
    samples = _noise(3.0) * np.linspace(0.05, 1.0, 48_000, dtype=np.float32)  # a rising level: peaks differ per patch
    for hop in (48, 24):
        cut = patches(samples, hop)
        spans = patch_spans(len(cut), hop)
        assert len(cut) == patch_count(len(samples), hop) == (48_000 - PATCH_SAMPLES) // (hop * 160) + 1
        assert spans[1, 0] == hop * 160 and spans[0, 1] == PATCH_SAMPLES
        for i in (0, len(cut) - 1):
            start, stop = spans[i]
            np.testing.assert_allclose(cut[i], log_mel(samples[start:stop]), atol=1e-4)


def test_peak_normalisation_makes_patches_level_free_and_silence_stays_silent():
    samples = _noise(1.5)
    np.testing.assert_allclose(patches(samples * 0.05), patches(samples), atol=1e-4)
    silent = patches(np.zeros(PATCH_SAMPLES, np.float32))
    assert np.allclose(silent, np.log(GOLDEN.log_offset))


def test_short_input_gives_no_patch_unless_padded():
    assert patches(_noise(0.5)).shape == (0, PATCH_FRAMES, 64)
    padded = patches(_noise(0.5), pad_end=True)
    assert padded.shape == (1, PATCH_FRAMES, 64)
    assert patches(_noise(1.0), 48, pad_end=True).shape[0] == 2  # 16,000 samples: a second, padded patch


# -- the shipped model -------------------------------------------------------------------------


def test_shipped_model_gives_probabilities_and_embeddings(model):
    assert model.classes[CRY_CLASS] == "Baby cry, infant cry" and len(model.classes) == NUM_CLASSES
    x = patches(_noise(2.0), 24)
    out = model.run(x)
    assert out.scores.shape == (len(x), NUM_CLASSES) and out.embeddings.shape == (len(x), EMBEDDING_DIM)
    assert np.all((out.scores >= 0) & (out.scores <= 1)) and np.all(np.isfinite(out.embeddings))
    assert np.all(out.embeddings >= 0)  # mean of ReLU6 outputs
    np.testing.assert_array_equal(model.scores(x[:1]), out.scores[:1])  # batching does not change a patch's result
    np.testing.assert_array_equal(model.classify(_noise(2.0), 24).scores, out.scores)
    floating = YamnetModel.load(quantised=False).run(x)
    assert np.abs(floating.scores - out.scores).max() < 0.1


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "yamnet"
    shutil.copytree(DEFAULT_FOLDER, folder)
    return folder


def test_corrupt_weights_are_refused_naming_the_file(tmp_path):
    folder = _copy(tmp_path)
    weights = folder / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(YamnetError, match=str(weights)):
        YamnetModel.load(folder)


def test_missing_files_are_refused_naming_the_file(tmp_path):
    folder = _copy(tmp_path)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(YamnetError, match=f"lacks {folder / WEIGHTS_FILE}"):
        YamnetModel.load(folder)
    with pytest.raises(YamnetError, match="lacks"):
        YamnetModel.load(tmp_path / "nowhere")


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    import hashlib

    from safetensors.numpy import load_file, save_file

    folder = _copy(tmp_path)
    tensors = load_file(folder / WEIGHTS_FILE)
    tensors["layer3.weight"] = tensors["layer3.weight"][:, :, :, :16].copy()  # a pointwise layer of the wrong width
    save_file(tensors, folder / WEIGHTS_FILE)
    meta = json.loads((folder / "yamnet.json").read_text())
    meta["weights_sha256"] = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    (folder / "yamnet.json").write_text(json.dumps(meta))
    with pytest.raises(YamnetError, match="do not fit"):
        YamnetModel.load(folder)
    meta["format"] = 99
    (folder / "yamnet.json").write_text(json.dumps(meta))
    with pytest.raises(YamnetError, match="format 99"):
        YamnetModel.load(folder)


def test_export_without_tensorflow_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    from train.cli import main

    tflite = tmp_path / "yamnet_spectra_in.tflite"
    tflite.write_bytes(b"not read")
    for name in ("LICENSE", "yamnet_class_map.csv"):
        shutil.copy(DEFAULT_FOLDER / name, tmp_path / name)
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import tensorflow now raises ImportError
    assert main(["yamnet-export", "--tflite", str(tflite), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error:") and "tensorflow" in err.lower()


# -- against tf.lite's interpreter ---------------------------------------------------------------


@pytest.fixture(scope="module")
def interpreter():
    if not TFLITE.is_file():
        pytest.skip(NO_GOLDEN)
    pytest.importorskip("tensorflow", reason="comparing with the TFLite interpreter needs tensorflow (the [hear] extra)")
    from train.detector.yamnet_export import interpreter as make

    return make(TFLITE)


@pytest.mark.slow  # importing TensorFlow alone takes seconds
def test_port_matches_the_interpreter(model, golden, interpreter, cries_index):
    from train.detector.yamnet_export import interpreter_scores

    rows = (pick(cries_index, 1, source="corvin", label="pain") + pick(cries_index, 1, source="donateacry")
            + pick(cries_index, 1, source="esc50", label="crying_baby") + pick(cries_index, 1, source="fsdd"))
    cut = [golden[1][None]] + [patches(load_audio(cry_path(r)), 48, pad_end=True)[:3] for r in rows]
    x = np.concatenate(cut)
    ours, theirs = model.scores(x), interpreter_scores(interpreter, x)
    assert np.abs(ours - theirs).max() <= SCORE_TOLERANCE
    np.testing.assert_array_equal(ours.argmax(axis=1), theirs.argmax(axis=1))
    assert np.abs(ours[:, CRY_CLASS] - theirs[:, CRY_CLASS]).max() <= SCORE_TOLERANCE
    assert model.classes[int(ours[0].argmax())] == "Speech" and abs(ours[0].max() - 0.94) < 0.01  # README's figure
    assert ours[1:10, CRY_CLASS].max() > 0.5  # the cries' patches
    floating = YamnetModel.load(quantised=False).scores(x)  # float activations: near, not equal
    assert np.abs(floating - theirs).max() < 0.15


@pytest.mark.slow
def test_export_reproduces_the_shipped_folder(tmp_path, interpreter):
    from train.detector.yamnet_export import export

    check = export(TFLITE, tmp_path / "yamnet")
    assert check["max_abs_score_diff"] <= SCORE_TOLERANCE
    assert (tmp_path / "yamnet" / WEIGHTS_FILE).read_bytes() == (DEFAULT_FOLDER / WEIGHTS_FILE).read_bytes()
    shipped = json.loads((DEFAULT_FOLDER / "yamnet.json").read_text())
    assert json.loads((tmp_path / "yamnet" / "yamnet.json").read_text())["weights_sha256"] == shipped["weights_sha256"]
