import json
from dataclasses import replace

import numpy as np
import pytest

from monitor.classify import Classifier, EvidenceModel, Head, HeadError, evidence_rules
from monitor.config import AlertSettings, ConfigError, Settings
from monitor.embed import EmbedderError, make_embedder
from monitor.messages import Embedding, Window
from monitor.spells import EvidenceRule

CLASSES = ("not_cry", "pain", "hunger")


def _identity_head(dim: int = 3) -> Head:
    """A head whose probabilities are softmax(log p): feed it log-probabilities, get p back."""
    return Head("identity", "test-emb", dim, CLASSES, {"pain": 0.6}, 1.0, np.zeros(dim, np.float32),
                np.ones(dim, np.float32), ((np.eye(dim, dtype=np.float32), np.zeros(dim, np.float32)),))


def _steps(classifier: Classifier, probs: list[tuple[float, float, float] | None]):
    predictions = []
    for i, p in enumerate(probs):
        window = Window(i * 16000, 1.0, -20.0, np.zeros(32000, np.float32) if p else None)
        raw = classifier.head.predict_proba(np.log(np.array([p])))[0] if p else None
        evidence = classifier.head.window_evidence(np.zeros((1, 3)), raw[None], ("pain",))[0] if p else {}
        predictions.append(classifier.step(Embedding(window, None, "test-emb"), raw, evidence))
    return predictions


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


def test_a_crying_window_carries_its_evidence_and_a_quiet_one_none():
    """Without an evidence model, a window's pain evidence is the log-odds of pain's share among the cry types."""
    classifier = Classifier(_identity_head(), smoothing=0.0, alerts=AlertSettings())
    crying, calm = _steps(classifier, [(0.2, 0.6, 0.2), (0.9, 0.05, 0.05)])
    assert crying.evidence["pain"] == pytest.approx(np.log(0.75 / 0.25), abs=1e-3) and calm.evidence == {}
    assert set(crying.evidence) == {"pain"}  # hunger is no alert class


def test_smoothing_damps_a_single_outlier_and_silence_decays_to_not_cry():
    classifier = Classifier(_identity_head(), smoothing=0.6, alerts=AlertSettings())
    results = _steps(classifier, [(0.9, 0.05, 0.05), (0.05, 0.9, 0.05), None, None, None])
    pain = [p.smoothed[1] for p in results]
    assert pain[1] == pytest.approx(0.6 * 0.05 + 0.4 * 0.9)
    assert results[-1].smoothed[0] > 0.9 and results[-1].raw is None and results[-1].evidence == {}


def test_alert_classes_the_head_lacks_are_reported_not_hidden():
    classifier = Classifier(_identity_head(), 0.5, AlertSettings(classes=("pain", "neurological")))
    assert classifier.unsupported_alert_classes == ("neurological",)


def test_a_heads_tuned_spell_rule_applies_and_config_still_wins():
    tuned = replace(_identity_head(), metadata={"spell_evidence": {"pain": {"threshold": 0.7, "min_windows": 4,
                                                                           "margin": 1.5}}})
    assert evidence_rules(_identity_head(), AlertSettings())["pain"] == EvidenceRule(0.5, 3, 0.0)  # untuned: defaults
    assert evidence_rules(tuned, AlertSettings())["pain"] == EvidenceRule(0.7, 4, 1.5)
    assert evidence_rules(tuned, AlertSettings(min_windows=2, thresholds={"pain": 0.6}))["pain"] == EvidenceRule(0.6, 2, 1.5)
    with pytest.raises(ConfigError, match="alerts.thresholds.painful: not a class of head"):
        evidence_rules(tuned, AlertSettings(thresholds={"painful": 0.6}))


def test_an_evidence_model_scores_crying_windows_and_the_head_vetoes_what_it_doubts(tmp_path):
    """A dedicated model's log-odds, lowered where the head says the window is neither pain nor its counterpart
    (a hungry phone cry): the model never learned such cries."""
    classes = ("not_cry", "pain", "discomfort", "hunger")
    head = Head("four", "test-emb", 4, classes, {}, 1.0, np.zeros(4, np.float32), np.ones(4, np.float32),
                ((np.eye(4, dtype=np.float32), np.zeros(4, np.float32)),),
                metadata={"spell_evidence": {"pain": {"model": True, "against": ["discomfort"], "threshold": 0.6,
                                                      "min_windows": 2}}},
                evidence={"pain": EvidenceModel(np.zeros(4, np.float32), np.ones(4, np.float32),
                                                np.array([1.0, 0.0, 0.0, 0.0], np.float32), 0.5, 1.0)})
    head.save(tmp_path / "h")
    loaded = Head.load(tmp_path / "h")
    vectors = np.array([[2.0, 0.0, 0.0, 0.0]] * 3)
    # pain or discomfort; mostly hunger (a quarter pain or discomfort); not crying
    raw = np.array([[0.1, 0.6, 0.3, 0.0], [0.1, 0.1, 0.125, 0.675], [0.8, 0.1, 0.05, 0.05]])
    evidence = loaded.window_evidence(vectors, raw, ("pain",))
    assert evidence[0]["pain"] == pytest.approx(2.5, abs=1e-3) and evidence[2] == {}
    assert evidence[1]["pain"] == pytest.approx(2.5 + np.log(0.25 / 0.75), abs=1e-3)


@pytest.mark.parametrize("damage, expected", [
    (lambda h: replace(h, metadata={"spell_evidence": {"pain": {"threshold": 1.5, "min_windows": 3}}}),
     "spell_evidence pain: threshold 1.5"),
    (lambda h: replace(h, metadata={"spell_evidence": {"pain": {"threshold": "high", "min_windows": 3}}}),
     "malformed spell_evidence"),
    (lambda h: replace(h, metadata={"spell_evidence": [0.5]}), "malformed"),
    (lambda h: replace(h, metadata={"spell_evidence": {"pain": {"threshold": 0.6, "min_windows": 3,
                                                                "against": ["bath"]}}}), "against"),
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
    prediction = classifier.step(Embedding(window, None, "test-emb"), np.array([np.nan, 0.5, 0.5]), {"pain": 1.0})
    assert prediction.raw is None and np.all(np.isfinite(prediction.smoothed)) and classifier.rejected == 1
    assert prediction.evidence == {}  # nor into a spell's evidence
    prediction = classifier.step(Embedding(window, None, "test-emb"), np.array([0.1, 0.8, 0.1]))
    assert np.all(np.isfinite(prediction.smoothed)) and prediction.smoothed[1] > 0.3


def test_a_reloaded_threshold_applies_to_the_next_windows_evidence_and_a_dropped_class_carries_none():
    classifier = Classifier(_identity_head(), 0.0, AlertSettings(classes=("pain", "hunger"), thresholds={"pain": 0.9}))
    assert classifier.rules["pain"].threshold == 0.9 and set(classifier.rules) == {"pain", "hunger"}
    rules = classifier.reconfigure(AlertSettings(classes=("pain",), thresholds={"pain": 0.5}, min_windows=5))
    assert rules == classifier.rules and rules["pain"].threshold == 0.5 and rules["pain"].min_windows == 5
    window = Window(0, 1.0, -20.0, np.zeros(32_000, np.float32))
    raw = np.array([0.2, 0.5, 0.3])
    prediction = classifier.step(Embedding(window, raw, "test"), raw, {"pain": 0.5, "hunger": -0.5})
    assert prediction.evidence == {"pain": 0.5}
