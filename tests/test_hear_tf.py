"""The TensorFlow HeAR backend against tiny SavedModels with google/hear's serving contract."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.config import HearSettings, settings_from_dict
from monitor.embed import make_embedder
from monitor.embed.base import EmbedderError
from monitor.embed.hear import load_hear
from tests.hear_standins import CRIES, REVISION, cry_clips, fill_hub_cache, require, save_tf_standin

tf = pytest.importorskip("tensorflow", reason="the tf backend needs tensorflow-cpu (the hear extra)")
TF_ID = f"hear-tf@{REVISION[:12]}"


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tf_standin(tmp_path_factory.mktemp("hear-tf") / "saved")


def hear_settings(**values: Any) -> Any:
    return settings_from_dict({"classifier": {"embedder": "hear"},
                               "hear": {"backend": "tf", "revision": REVISION, **values}})


def test_model_dir_flows_through_make_embedder(standin: Path) -> None:
    embedder = make_embedder(hear_settings(model_dir=str(standin)))
    assert (embedder.id, embedder.dim) == (TF_ID, 512)
    clips = cry_clips(4)
    vectors = embedder.embed(clips)
    assert vectors.shape == (4, 512) and vectors.dtype == np.float32
    serve = tf.saved_model.load(str(standin)).signatures["serving_default"]
    one_by_one = np.concatenate([serve(x=tf.constant(clip[None]))["output_0"].numpy() for clip in clips])
    np.testing.assert_allclose(vectors, one_by_one, rtol=1e-5, atol=1e-5)  # the graph's own batch of one


def test_found_offline_in_the_hub_cache_under_auto(standin: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    fill_hub_cache(tmp_path, "google/hear", standin)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    embedder = make_embedder(hear_settings(backend="auto", cache_dir=str(tmp_path)))
    assert embedder.id == TF_ID  # no torch copy in the cache, so auto takes the SavedModel
    assert embedder.embed(np.random.default_rng(0).standard_normal((3, 32_000), np.float32)).shape == (3, 512)


def test_vectors_do_not_depend_on_batch_mates_or_gain(standin: Path) -> None:
    # The stand-in, like google/hear's graph, scales the whole batch at once; the backend must undo that.
    embedder = load_hear(HearSettings(backend="tf", model_dir=str(standin), revision=REVISION))
    clips = cry_clips(2)
    alone = embedder.embed(clips[1:])
    together = embedder.embed(np.stack([clips[0], 0.01 * clips[1]]))
    np.testing.assert_allclose(together[1], alone[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(embedder.embed(np.zeros((1, 32_000), np.float32)),
                               embedder.embed(np.full((1, 32_000), 0.5, np.float32)))


@pytest.mark.parametrize("shape", [(1, 16_000), (1, 64_000), (32_000,)])
def test_wrong_input_length_is_refused(standin: Path, shape: tuple[int, ...]) -> None:
    embedder = load_hear(HearSettings(backend="tf", model_dir=str(standin), revision=REVISION))
    with pytest.raises(EmbedderError, match=r"\(N, 32000\) at 16 kHz"):
        embedder.embed(np.zeros(shape, np.float32))


def one_line_error(folder: Path, match: str) -> None:
    with pytest.raises(EmbedderError, match=match) as info:
        load_hear(HearSettings(backend="tf", model_dir=str(folder), revision=REVISION))
    assert "\n" not in str(info.value) and "pull hear --backend tf" in str(info.value)


def test_wrong_signature_name_is_refused(tmp_path: Path) -> None:
    one_line_error(save_tf_standin(tmp_path / "m", signature="predict"),
                   r"no serving_default signature \(has: predict\)")


def test_wrong_input_key_is_refused(tmp_path: Path) -> None:
    one_line_error(save_tf_standin(tmp_path / "m", input_key="audio"),
                   r"takes \(audio: float32 \(None, 32000\)\), not x: float32")


def test_wrong_output_size_is_refused(tmp_path: Path) -> None:
    one_line_error(save_tf_standin(tmp_path / "m", dim=256), r"returns \(output_0: \(None, 256\)\), not output_0")


def test_missing_variables_are_refused(tmp_path: Path) -> None:
    folder = save_tf_standin(tmp_path / "m")
    for path in (folder / "variables").iterdir():
        path.unlink()
    one_line_error(folder, r"cannot load the SavedModel")


def test_missing_saved_model_pb_is_refused(tmp_path: Path) -> None:
    folder = save_tf_standin(tmp_path / "m")
    (folder / "saved_model.pb").unlink()
    with pytest.raises(EmbedderError, match=r"has no saved_model.pb \(tf\)"):
        load_hear(HearSettings(backend="tf", model_dir=str(folder), revision=REVISION))


def test_vectors_flow_through_a_head_into_episodes(standin: Path, tmp_path: Path) -> None:
    from monitor.analyze import analyze_samples
    from monitor.audio import load_audio
    from monitor.classify import Head, HeadError
    from monitor.pipeline import Models

    # A head for this embedder id that always says "pain": the point is the plumbing, not the head.
    head = Head(name="hear-standin", embedder_id=TF_ID, dim=512, classes=("not_cry", "pain"),
                thresholds={"pain": 0.5}, temperature=1.0, mean=np.zeros(512, np.float32),
                scale=np.ones(512, np.float32),
                layers=((np.zeros((512, 2), np.float32), np.array([0.0, 5.0], np.float32)),))
    head.save(tmp_path / "head")
    settings = settings_from_dict({
        "classifier": {"embedder": "hear", "head": str(tmp_path / "head")},
        "hear": {"backend": "tf", "model_dir": str(standin), "revision": REVISION},
    })
    _, summary = analyze_samples(load_audio(require(CRIES / "corvin" / "AMJ_D01.flac")), settings,
                                 Models.load(settings))
    assert summary["gated_windows"] > 0
    assert [e["label"] for e in summary["episodes"]] == ["pain"]

    other = settings_from_dict({"classifier": {"embedder": "hear", "head": str(tmp_path / "head")},
                                "hear": {"backend": "tf", "model_dir": str(standin), "revision": "f" * 40}})
    with pytest.raises(HeadError, match="hear-tf@ffffffffffff"):
        Models.load(other)  # another revision's vectors are refused by the head
