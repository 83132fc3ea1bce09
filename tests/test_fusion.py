"""Detector v2 (the CRNN fused with YAMNet): streaming equals the fit's batch computation, silence costs no
backbone call, and a folder whose backbone is not the one it was fitted with is refused."""
import dataclasses
import json
import shutil

import numpy as np
import pytest

from monitor.audio.scenario import render_scenario
from monitor.config import PROJECT_ROOT
from monitor.detect import DetectorError, DetectorModel
from monitor.detect.crnn import StreamingDetector
from monitor.detect.fusion import FusedStream, Fusion, patches_for
from train.detector.fusion import Recording, all_patch_scores, fused_track
from train.detector.mixing import room_noise

SHIPPED = PROJECT_ROOT / "models" / "cry-detector-v2"


@pytest.fixture(scope="module")
def v2() -> DetectorModel:
    model = DetectorModel.load(SHIPPED)
    assert model.fusion is not None, f"{SHIPPED} is fused with a backbone"
    return model


def _stream(model: DetectorModel, samples: np.ndarray, sizes: list[int]) -> tuple[np.ndarray, FusedStream]:
    stream = model.stream()
    assert isinstance(stream, FusedStream)
    out, at, i = [], 0, 0
    while at < len(samples):
        size = sizes[i % len(sizes)]
        out.append(stream.push(samples[at: at + size]))
        at, i = at + size, i + 1
    out.append(stream.flush())
    return np.concatenate(out), stream


def test_the_stream_gives_the_fits_probabilities_whatever_the_block_size(v2):
    samples = render_scenario("nicu").samples[: 40 * 16000]
    crnn_stream = StreamingDetector(v2)
    crnn = np.concatenate([crnn_stream.push(samples), crnn_stream.flush()])
    fusion = v2.fusion
    assert fusion is not None and v2.backbone is not None
    recording = Recording(crnn, all_patch_scores(v2.backbone, samples, fusion.step, patches_for(len(crnn), fusion,
                                                                                              v2.features)),
                          np.zeros(len(crnn)), None, None)
    expected = fused_track(recording, fusion, v2.features)
    whole, _ = _stream(v2, samples, [len(samples)])
    small, stream = _stream(v2, samples, [800, 1600, 333, 4000])
    assert len(whole) == len(crnn) == len(small)
    np.testing.assert_allclose(whole, expected, atol=1e-5)
    np.testing.assert_allclose(small, expected, atol=1e-5)
    assert stream.patches_run > 0  # the scenario's cry woke the backbone


def test_silence_and_a_quiet_room_cost_no_backbone_call(v2):
    rng = np.random.default_rng(0)
    quiet = (room_noise(rng, 20.0) * 10 ** (-55 / 20)).astype(np.float32)
    probs, stream = _stream(v2, np.concatenate([np.zeros(5 * 16000, np.float32), quiet]), [1600])
    assert stream.patches_run == 0 and stream.patches_skipped > 50
    assert probs.max() < 0.1


def test_a_backbone_other_than_the_fitted_one_is_refused(v2, tmp_path):
    folder = tmp_path / "detector"
    shutil.copytree(SHIPPED, folder)
    meta = json.loads((folder / "detector.json").read_text())
    meta["fusion"]["backbone"] = str((SHIPPED / meta["fusion"]["backbone"]).resolve())
    (folder / "detector.json").write_text(json.dumps(meta))
    assert DetectorModel.load(folder).fusion == dataclasses.replace(v2.fusion, backbone=meta["fusion"]["backbone"])
    meta["fusion"]["backbone_id"] = "0" * 64
    (folder / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(DetectorError, match="was fitted with backbone 0000"):
        DetectorModel.load(folder)
    meta["fusion"]["backbone"] = str(tmp_path / "nowhere")
    (folder / "detector.json").write_text(json.dumps(meta))
    with pytest.raises(DetectorError, match="needs its backbone"):
        DetectorModel.load(folder)


def test_fusion_settings_are_checked():
    with pytest.raises(ValueError, match="odd span"):
        Fusion("../yamnet", "x", smooth_frames=4)
