import numpy as np

from monitor.config import EpisodeSettings
from monitor.episodes import EpisodeTracker
from monitor.messages import SAMPLE_RATE, Event, Prediction, Window

CLASSES = ("not_cry", "pain", "hunger")


def _prediction(second: int, probs: tuple[float, float, float] | None) -> Prediction:
    window = Window(second * SAMPLE_RATE, 1.0, -20.0, np.zeros(32000, np.float32) if probs else None)
    smoothed = np.array(probs if probs else (1.0, 0.0, 0.0))
    return Prediction(window, CLASSES, smoothed if probs else None, smoothed)


def _feed(tracker, sequence, alerts_at=()):
    events = []
    for second, probs in enumerate(sequence):
        alerts = [Event("alert_raised", 0, {"label": "pain", "probability": 0.9})] if second in alerts_at else []
        events += tracker.update(_prediction(second, probs), alerts)
    return events


def test_episode_opens_on_first_cry_window_and_closes_after_quiet():
    tracker = EpisodeTracker(EpisodeSettings(cry_threshold=0.5, quiet_s=3.0))
    cry, quiet = (0.1, 0.6, 0.3), None
    events = _feed(tracker, [quiet, cry, cry, quiet, cry, quiet, quiet, quiet, quiet, quiet], alerts_at={2})
    kinds = [e.kind for e in events]
    assert kinds == ["episode_opened", "episode_updated", "alert_raised", "episode_updated", "episode_closed"]
    closed = events[-1].data
    assert closed["start_s"] == 1.0 and closed["end_s"] == 6.0  # last cry window [4, 6) s
    assert closed["label"] == "pain" and closed["windows"] == 3
    assert closed["probs"]["pain"] == 0.6 and closed["peak"]["hunger"] == 0.3
    assert closed["alert"] is True and closed["alerts"] == ["pain"]
    assert events[2].data["episode"] == 1


def test_open_episode_is_closed_at_end_of_input():
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=30))
    _feed(tracker, [(0.2, 0.2, 0.6)] * 3)
    [closed] = tracker.finish()
    assert closed.kind == "episode_closed" and closed.data["label"] == "hunger"
    assert tracker.finish() == []


def test_uncertain_windows_do_not_open_an_episode():
    tracker = EpisodeTracker(EpisodeSettings(cry_threshold=0.5))
    assert _feed(tracker, [(0.6, 0.2, 0.2)] * 5) == []
