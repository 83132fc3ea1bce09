import json
from dataclasses import replace

import numpy as np
import pytest

from monitor.classify import Classifier, Head, HeadError
from monitor.config import AlertSettings, Settings
from monitor.embed import EmbedderError, make_embedder
from monitor.messages import Embedding, Window

CLASSES = ("not_cry", "pain", "hunger")


def _identity_head(dim: int = 3) -> Head:
    """A head whose probabilities are softmax(log p): feed it log-probabilities, get p back."""
    return Head("identity", "test-emb", dim, CLASSES, {"pain": 0.6}, 1.0, np.zeros(dim, np.float32),
                np.ones(dim, np.float32), ((np.eye(dim, dtype=np.float32), np.zeros(dim, np.float32)),))


def _steps(classifier: Classifier, probs: list[tuple[float, float, float] | None]):
    events = []
    for i, p in enumerate(probs):
        window = Window(i * 16000, 1.0, -20.0, np.zeros(32000, np.float32) if p else None)
        raw = classifier.head.predict_proba(np.log(np.array([p]))) [0] if p else None
        prediction, alerts = classifier.step(Embedding(window, None, "test-emb"), raw)
        events.append((prediction, [type(a).__name__ for a in alerts]))
    return events


def test_head_round_trips_through_its_artifact(tmp_path):
    head = _identity_head()
    head.save(tmp_path / "h")
    loaded = Head.load(tmp_path / "h")
    x = np.log(np.array([[0.2, 0.5, 0.3]]))
    np.testing.assert_allclose(loaded.predict_proba(x), [[0.2, 0.5, 0.3]], atol=1e-6)
    assert json.loads((tmp_path / "h" / "head.json").read_text())["embedder_id"] == "test-emb"


def test_head_refuses_another_embedders_vectors():
    with pytest.raises(HeadError, match=r"trained on embedder 'test-emb' \(dim 3\).*running embedder is 'hear-x' \(dim 512\)"):
        _identity_head().check_embedder("hear-x", 512)


def test_shipped_head_matches_the_default_embedder(settings):
    head = Head.load(settings.classifier.head_path())
    embedder = make_embedder(settings)
    head.check_embedder(embedder.id, embedder.dim)
    assert "not_cry" in head.classes and "pain" in head.classes
    assert set(head.thresholds) >= {"pain"}


def test_unknown_embedder_and_missing_head_are_clear_errors(tmp_path):
    with pytest.raises(EmbedderError, match="unknown embedder 'wav2vec'.*classifier.embedder"):
        make_embedder(Settings().with_overrides(classifier={"embedder": "wav2vec"}))
    with pytest.raises(HeadError, match="no head at .*missing"):
        Head.load(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "head.json").write_text("{")
    (tmp_path / "broken" / "weights.npz").write_bytes(b"")
    with pytest.raises(HeadError, match="unreadable"):
        Head.load(tmp_path / "broken")


def test_alert_needs_sustained_evidence_and_clears_after_sustained_absence():
    classifier = Classifier(_identity_head(), smoothing=0.0, alerts=AlertSettings(raise_windows=2, clear_windows=3))
    pain, calm = (0.05, 0.9, 0.05), (0.9, 0.05, 0.05)
    kinds = [k for _, k in _steps(classifier, [pain, calm, pain, pain, calm, calm, pain, calm, calm, calm])]
    assert kinds == [[], [], [], ["AlertStarted"], [], [], [], [], [], ["AlertEnded"]]


def test_smoothing_damps_a_single_outlier_and_silence_decays_to_not_cry():
    classifier = Classifier(_identity_head(), smoothing=0.6, alerts=AlertSettings(raise_windows=1))
    results = _steps(classifier, [(0.9, 0.05, 0.05), (0.05, 0.9, 0.05), None, None, None])
    pain = [p.smoothed[1] for p, _ in results]
    assert pain[1] == pytest.approx(0.6 * 0.05 + 0.4 * 0.9)
    assert all(k == [] for _, k in results)  # one pain window never reaches 0.6 after smoothing
    assert results[-1][0].smoothed[0] > 0.9 and results[-1][0].raw is None


def test_alert_classes_the_head_lacks_are_reported_not_hidden():
    classifier = Classifier(_identity_head(), 0.5, AlertSettings(classes=("pain", "neurological")))
    assert classifier.unsupported_alert_classes == ("neurological",)


def test_config_thresholds_override_the_heads():
    classifier = Classifier(_identity_head(), 0.0, AlertSettings(raise_windows=1, thresholds={"pain": 0.95}))
    assert [k for _, k in _steps(classifier, [(0.05, 0.9, 0.05)])] == [[]]


def test_a_heads_tuned_alert_threshold_replaces_its_window_threshold_and_config_still_wins():
    tuned = replace(_identity_head(), metadata={"alert_thresholds": {"pain": 0.8}})
    between = (0.05, 0.7, 0.25)  # above the window threshold (0.6), below the tuned alert threshold (0.8)
    assert [k for _, k in _steps(Classifier(_identity_head(), 0.0, AlertSettings(raise_windows=1)), [between])] \
        == [["AlertStarted"]]
    assert [k for _, k in _steps(Classifier(tuned, 0.0, AlertSettings(raise_windows=1)), [between])] == [[]]
    assert [k for _, k in _steps(Classifier(tuned, 0.0, AlertSettings(raise_windows=1)), [(0.05, 0.9, 0.05)])] \
        == [["AlertStarted"]]
    overridden = AlertSettings(raise_windows=1, thresholds={"pain": 0.65})
    assert [k for _, k in _steps(Classifier(tuned, 0.0, overridden), [between])] == [["AlertStarted"]]


def test_acoustic_v3s_alert_threshold_was_tuned_behind_the_detector_it_types_for():
    from monitor.config import PROJECT_ROOT
    from monitor.detect import DetectorModel

    head = Head.load(PROJECT_ROOT / "models" / "acoustic-v3")
    tuning = head.metadata["alert_tuning"]
    assert tuning["detector"] == head.metadata["detector"] == DetectorModel.load(PROJECT_ROOT / "models" / "cry-detector-v2").id
    assert {c["label"]: c["chosen"] for c in tuning["classes"]} == head.alert_thresholds
    assert all(c["cry_free_alerts"] == 0 and c["cry_free_mixtures"] >= 100 for c in tuning["classes"])


def test_acoustic_v3_was_held_out_on_the_detectors_own_test_infants():
    """Its held-out figures and detector v2's benchmarks are on the same infants, which neither learned from."""
    from monitor.config import PROJECT_ROOT
    from monitor.detect import DetectorModel

    head = Head.load(PROJECT_ROOT / "models" / "acoustic-v3")
    detector_test = set(DetectorModel.load(PROJECT_ROOT / "models" / "cry-detector-v2").metadata["training"]
                        ["split_groups"]["test"])
    sources = {group.split("/")[0] for group in detector_test}
    held = {g for g in head.metadata["heldout_groups"] if g.split("/")[0] in sources}
    assert held == detector_test


@pytest.mark.parametrize("damage, expected", [
    (lambda h: replace(h, metadata={"alert_thresholds": {"pain": 1.5}}), "threshold pain=1.5"),
    (lambda h: replace(h, metadata={"alert_thresholds": {"pain": "high"}}), "malformed alert_thresholds"),
    (lambda h: replace(h, metadata={"alert_thresholds": [0.5]}), "malformed alert_thresholds"),
    (lambda h: replace(h, layers=((h.layers[0][0] * np.nan, h.layers[0][1]),)), "non-finite values in W0"),
    (lambda h: replace(h, scale=np.zeros_like(h.scale)), "zero or negative scale"),
    (lambda h: replace(h, temperature=0.0), "temperature 0.0"),
    (lambda h: replace(h, thresholds={"pain": 1.5}), "threshold pain=1.5"),
    (lambda h: replace(h, thresholds={"painful": 0.5}), "threshold painful=0.5"),
    (lambda h: replace(h, classes=("not_cry", "pain", "pain")), "repeated class names"),
])
def test_a_head_that_could_not_detect_is_refused_on_load(tmp_path, damage, expected):
    damage(_identity_head()).save(tmp_path / "h")
    with pytest.raises(HeadError, match=expected):
        Head.load(tmp_path / "h")


@pytest.mark.parametrize("break_files, expected", [
    (lambda d: (d / "weights.npz").write_bytes(b"PK\x03\x04 not a zip"), "unreadable"),
    (lambda d: (d / "head.json").write_text('{"format": 1, "dim": 3}'), "malformed .KeyError"),
    (lambda d: (d / "head.json").write_text("[1, 2]"), "has format list"),
    (lambda d: (d / "head.json").write_text('{"format": 1, "embedder_id": "e", "dim": "three", "classes": [], '
                                            '"thresholds": {}}'), "malformed .ValueError"),
])
def test_a_malformed_head_is_one_clear_error(tmp_path, break_files, expected):
    _identity_head().save(tmp_path / "h")
    break_files(tmp_path / "h")
    with pytest.raises(HeadError, match=expected):
        Head.load(tmp_path / "h")


def test_a_non_finite_head_output_never_enters_the_smoother():
    classifier = Classifier(_identity_head(), 0.6, AlertSettings(classes=("pain",)))
    window = Window(0, 1.0, -20.0, np.zeros(32000, np.float32))
    prediction, _ = classifier.step(Embedding(window, None, "test-emb"), np.array([np.nan, 0.5, 0.5]))
    assert prediction.raw is None and np.all(np.isfinite(prediction.smoothed)) and classifier.rejected == 1
    prediction, _ = classifier.step(Embedding(window, None, "test-emb"), np.array([0.1, 0.8, 0.1]))
    assert np.all(np.isfinite(prediction.smoothed)) and prediction.smoothed[1] > 0.3
