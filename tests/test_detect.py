"""The cry detector's artifact, numpy forward pass and streaming, and its refusals of bad models."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from monitor.config import DetectorSettings
from monitor.detect import Decision, DetectorError, DetectorModel, FeatureSettings
from monitor.detect.crnn import Architecture, LogMel, StreamingDetector, pad_for_training
from tests.conftest import run_crywatch
from train.detector.training import CryCRNN, exported

SHIPPED = DetectorSettings().model_path()


def _random_model(seed: int = 0) -> tuple[CryCRNN, DetectorModel]:
    """A torch network with non-trivial normalisation statistics, and the same weights as a DetectorModel."""
    torch.manual_seed(seed)
    arch = Architecture()
    network = CryCRNN(FeatureSettings().n_mels, arch)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    network.band_mean.uniform_(-8, -2)
    network.band_std.uniform_(1, 3)
    network.eval()
    return network, DetectorModel("random", FeatureSettings(), arch, Decision(), exported(network))


def _noisy_tone(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * 450 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0)
            + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def _torch_probs(network: CryCRNN, model: DetectorModel, samples: np.ndarray) -> np.ndarray:
    """The training-time computation: the whole recording at once, the GRU from rest at its start."""
    features = LogMel(model.features)(samples)
    with torch.inference_mode():
        logits = network(torch.from_numpy(pad_for_training(features, model.architecture)).unsqueeze(0))[0][0]
    return torch.sigmoid(logits[model.architecture.delay_frames :]).numpy()


def _stream_probs(model: DetectorModel, samples: np.ndarray) -> np.ndarray:
    stream = StreamingDetector(model)
    return np.concatenate([stream.push(samples), stream.flush()])


def test_numpy_forward_matches_the_torch_network_it_was_trained_as():
    """Shorter than the GRU's context, every chunk's warm-up reaches back to the start: the two agree."""
    network, model = _random_model()
    samples = _noisy_tone(1.5)
    expected = _torch_probs(network, model, samples)
    got = _stream_probs(model, samples)
    assert len(got) == len(expected) == LogMel(model.features).frames_in(len(samples))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_what_came_long_before_does_not_change_a_frame():
    """The GRU restarts from rest before each chunk: 10 s of other sound before a recording leave
    its frames past the first context untouched (hours of carried state cannot drift)."""
    _network, model = _random_model()
    arch, hop = model.architecture, model.features.frame_hop
    samples = _noisy_tone(6.0)
    before = 500 * hop  # a whole number of chunks, so chunk boundaries stay put
    prefix = np.random.default_rng(5).normal(0, 0.05, before).astype(np.float32)
    alone, after = _stream_probs(model, samples), _stream_probs(model, np.concatenate([prefix, samples]))
    settled = arch.context_frames + arch.chunk_frames + 4
    np.testing.assert_allclose(after[500 + settled :], alone[settled:], atol=1e-6)
    assert not np.allclose(after[500 : 500 + 3], alone[:3], atol=1e-6)  # near the join they do differ


@pytest.mark.parametrize("block", [160, 800, 3333, 16000])
def test_streaming_in_blocks_of_any_size_gives_the_same_probabilities(block):
    _network, model = _random_model(1)
    samples = _noisy_tone(5.0)
    whole = StreamingDetector(model)
    expected = np.concatenate([whole.push(samples), whole.flush()])
    stream = StreamingDetector(model)
    parts = [stream.push(samples[i : i + block]) for i in range(0, len(samples), block)]
    np.testing.assert_allclose(np.concatenate(parts + [stream.flush()]), expected, atol=1e-6)


def test_probabilities_lag_the_newest_frame_by_the_lookahead_and_at_most_one_chunk():
    _network, model = _random_model()
    arch = model.architecture
    stream = StreamingDetector(model)
    out = stream.push(np.zeros(16000, np.float32))  # 1 s = 49 whole frames
    lag = LogMel(model.features).frames_in(16000) - len(out)
    assert arch.lookahead_frames <= lag < arch.lookahead_frames + arch.chunk_frames


def test_save_and_load_round_trip(tmp_path):
    _network, model = _random_model()
    model.save(tmp_path / "det")
    loaded = DetectorModel.load(tmp_path / "det")
    assert loaded.decision == model.decision and loaded.id.startswith("random@")
    samples = _noisy_tone(3.0)
    a, b = StreamingDetector(model), StreamingDetector(loaded)
    np.testing.assert_array_equal(a.push(samples), b.push(samples))


def _saved(tmp_path) -> tuple:
    _network, model = _random_model()
    folder = tmp_path / "det"
    model.save(folder)
    return folder, json.loads((folder / "detector.json").read_text())


@pytest.mark.parametrize("spoil, message", [
    (lambda f, meta: (f / "weights.safetensors").unlink(), "no cry detector at"),
    (lambda f, meta: (f / "weights.safetensors").write_bytes(b"not a safetensors file"), "is unreadable"),
    (lambda f, meta: (f / "detector.json").write_text("{"), "is unreadable"),
    (lambda f, meta: (f / "detector.json").write_text(json.dumps({**meta, "format": 99})), "has format 99"),
    (lambda f, meta: (f / "detector.json").write_text(
        json.dumps({**meta, "features": {**meta["features"], "sample_rate": 8000}})), "trained at 8000 Hz"),
    (lambda f, meta: (f / "detector.json").write_text(
        json.dumps({**meta, "features": {**meta["features"], "n_mels": 40}})), "expects features"),
    (lambda f, meta: (f / "detector.json").write_text(
        json.dumps({**meta, "architecture": {**meta["architecture"], "channels": [8, 8, 8]}})), "do not fit"),
    (lambda f, meta: (f / "detector.json").write_text(json.dumps({**meta, "architecture": {"channels": [16, 32, 48]}})),
     "is malformed"),
])
def test_a_bad_detector_is_refused_naming_the_file(tmp_path, spoil, message):
    folder, meta = _saved(tmp_path)
    spoil(folder, meta)
    with pytest.raises(DetectorError, match=message) as error:
        DetectorModel.load(folder)
    message = str(error.value)
    assert str(folder) in message and "python -m train detector" in message


def test_the_monitor_refuses_a_mismatched_detector_at_start_with_one_line(tmp_path):
    folder, meta = _saved(tmp_path)
    (folder / "detector.json").write_text(json.dumps({**meta, "features": {**meta["features"], "sample_rate": 44100}}))
    config = tmp_path / "c.toml"
    config.write_text(f'[detector]\nmodel = "{folder}"\n')
    result = run_crywatch("--config", str(config), "run", "--headless", "--input", "scenario:quiet", "--db",
                          f"sqlite:///{tmp_path}/x.db", "--bus", "tcp://127.0.0.1:*")
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "detector.json" in line and "44100 Hz" in line and "python -m train detector" in line


def test_the_shipped_detector_runs_the_decisions_its_validation_chose_and_its_splits_are_disjoint():
    model = DetectorModel.load(SHIPPED)
    training = model.metadata["training"]
    tuning = model.metadata["v2"]["tuning"] if model.fusion is not None else training["tuning"]
    assert dataclasses.asdict(model.decision) == tuning["chosen"]
    sides = {side: set(groups) for side, groups in training["split_groups"].items()}
    assert set(sides) == {"train", "val", "test"} and all(sides.values())
    assert not (sides["train"] & sides["val"] or sides["train"] & sides["test"] or sides["val"] & sides["test"])
