"""Spell evidence (train/heads/evidence.py): leave-one-infant-out fitting, calibration and the rule chosen on
validation spells, on clips whose windows are drawn to separate pain from bath for all infants but one."""
from __future__ import annotations

import numpy as np
import pytest

from monitor.classify import Head
from monitor.spells import EvidenceRule
from train.datasets import DataError
from train.heads.evidence import Clip, FalseSpells, choose_rule, fit_evidence

CLASSES = ("not_cry", "pain", "discomfort", "hunger", "other_cry")


def _head() -> Head:
    """A head whose probabilities are softmax of the vector: every window below is crying, pain or discomfort."""
    return Head("identity", "test-emb", 5, CLASSES, {}, 1.0, np.zeros(5, np.float32), np.ones(5, np.float32),
                ((np.eye(5, dtype=np.float32), np.zeros(5, np.float32)),))


def _clips(seed: int = 0, swapped: str = "i9") -> list[Clip]:
    """Ten infants, four vaccination and four bath clips each, 6 windows a clip; infant `swapped` cries the other way."""
    rng, head, clips = np.random.default_rng(seed), _head(), []
    for infant in [f"i{k}" for k in range(10)]:
        for target in ("pain", "discomfort"):
            for k in range(4):
                sign = (1.0 if target == "pain" else -1.0) * (-1.0 if infant == swapped else 1.0)
                vectors = np.zeros((6, 5), np.float32)
                vectors[:, 0] = -3.0  # not_cry unlikely: crying windows
                vectors[:, 1] = vectors[:, 2] = 1.0
                vectors[:, 1] += sign * 0.8 + rng.normal(0, 1.0, 6)
                vectors[:, 2] -= sign * 0.8 + rng.normal(0, 1.0, 6)
                clips.append(Clip(f"{infant}/{target}{k}", infant, target, "clean", vectors, head.predict_proba(vectors)))
    return clips


def test_the_rule_is_chosen_on_validation_spells_and_the_odd_infant_is_named_not_tuned_away():
    head, clips = _head(), _clips()
    model, report, scores = fit_evidence(head, clips, "pain", ("discomfort",))
    chosen = choose_rule(clips, report, scores, FalseSpells([], 1.0))
    assert chosen["leave_one_infant_out"]["clean"]["window_auc"] > 0.7
    rule = chosen["chosen"]
    assert rule["met"] and rule["false_per_hour"] == 0.0
    assert all(r["alarm"] >= 0.8 and r["other"] <= 0.2 for r in rule["spells"].values()), rule["spells"]
    assert chosen["infants_whose_other_spells_mostly_alarm"] == ["i9"]  # its bath cries sound like the others' pain
    assert chosen["infants_whose_spells_mostly_do_not_alarm"] == ["i9"]
    # The shipped model is calibrated: even odds lie between the two classes' windows.
    pain = np.concatenate([c.vectors for c in clips if c.target == "pain" and c.infant != "i9"])
    bath = np.concatenate([c.vectors for c in clips if c.target == "discomfort" and c.infant != "i9"])
    assert np.median(model.log_odds(pain)) > 0 > np.median(model.log_odds(bath))


def test_false_spells_that_would_alarm_push_the_rule_to_ask_for_more():
    head, clips = _head(), _clips()
    _, report, scores = fit_evidence(head, clips, "pain", ("discomfort",))
    loose = choose_rule(clips, report, scores, None)["chosen"]
    # Ten false spells an hour of two confident pain-like windows: a rule deciding on two windows would alarm on them.
    false = FalseSpells([np.array([3.0, 3.0], np.float32)] * 10, 1.0)
    strict = choose_rule(clips, report, scores, false)["chosen"]
    assert EvidenceRule(strict["threshold"], strict["min_windows"], strict["margin"]).decided_at(
        np.array([3.0, 3.0])) is None
    assert strict["false_per_hour"] == 0.0 and (strict["min_windows"], strict["margin"]) != (2, 0.0)
    assert loose["false_per_hour"] is None


def test_fewer_than_three_infants_with_the_class_is_refused():
    clips = [c for c in _clips() if c.target == "discomfort" or c.infant in ("i0", "i1")]
    with pytest.raises(DataError, match="2 infants have pain cries: leave-one-infant-out needs at least 3"):
        fit_evidence(_head(), clips, "pain", ("discomfort",))
