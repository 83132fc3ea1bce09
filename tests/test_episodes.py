"""Episodes: timing from detector frames, type from the head's windows, closing after the quiet period."""
from dataclasses import replace

import numpy as np

from monitor.config import EpisodeSettings
from monitor.episodes import UNTYPED, EpisodeTracker
from monitor.messages import (
    SAMPLE_RATE,
    Activity,
    AlertStarted,
    CryOnset,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeUpdated,
    Prediction,
    Window,
)

CLASSES = ("not_cry", "pain", "hunger")
PAIN = AlertStarted(0, "pain", 0.9, 0.6, None)


def _kinds(events) -> list[tuple[str, int]]:
    """(event class, episode number) per event."""
    return [(type(e).__name__, e.episode if isinstance(e, AlertStarted) else e.episode.number) for e in events]
HOP = 320  # 20 ms frames


def _activity(start_s: float, active: list[bool], onsets_s: tuple[float, ...] = (), confirmed_s: float = 0.0) -> Activity:
    """Frames from `start_s` on, 20 ms each; runs confirmed at `confirmed_s` (default: the first frame's end)."""
    flags = np.array(active, bool)
    confirmed = int((confirmed_s or start_s + HOP / SAMPLE_RATE) * SAMPLE_RATE)
    return Activity(int(start_s * SAMPLE_RATE), HOP, flags.astype(np.float32), flags,
                    tuple(CryOnset(int(t * SAMPLE_RATE), confirmed) for t in onsets_s))


def _frames(start_s: float, end_s: float, active: bool, onset: bool = False) -> Activity:
    n = int(round((end_s - start_s) * SAMPLE_RATE / HOP))
    return _activity(start_s, [active] * n, (start_s,) if onset else ())


def _prediction(start_s: float, probs: tuple[float, float, float] | None) -> Prediction:
    window = Window(int(start_s * SAMPLE_RATE), 1.0 if probs else 0.0, -20.0,
                    np.zeros(32000, np.float32) if probs else None)
    smoothed = np.array(probs if probs else (1.0, 0.0, 0.0))
    return Prediction(window, CLASSES, smoothed if probs else None, smoothed)


def test_an_episode_opens_at_the_first_cry_frame_not_at_a_window_edge():
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=3.0), CLASSES)
    assert tracker.observe(_frames(0.0, 1.3, False)) == []
    [opened] = tracker.observe(_activity(1.3, [True] * 10, onsets_s=(1.14,), confirmed_s=1.42))
    assert isinstance(opened, EpisodeOpened)
    assert opened.episode.start_s == 1.14 and opened.episode.detected_s == 1.42
    assert opened.episode.label == UNTYPED and opened.time == int(1.42 * SAMPLE_RATE)


def test_windows_type_the_episode_and_alerts_carry_its_number():
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=3.0), CLASSES)
    tracker.observe(_frames(1.0, 4.0, True, onset=True))
    events = tracker.classify(_prediction(0.5, (0.1, 0.7, 0.2)), [])
    events += tracker.classify(_prediction(1.5, (0.1, 0.5, 0.4)), [PAIN])
    events += tracker.classify(_prediction(2.5, None), [])  # ungated: types nothing
    assert _kinds(events) == [("EpisodeUpdated", 1), ("EpisodeUpdated", 1), ("AlertStarted", 1)]
    tracker.observe(_frames(4.0, 6.9, False))
    assert tracker.current is not None  # quiet for 2.9 s < 3 s
    [closed] = tracker.observe(_frames(6.9, 7.1, False))
    ep = closed.episode
    assert isinstance(closed, EpisodeClosed) and ep.start_s == 1.0 and ep.end_s == 4.0
    assert ep.label == "pain" and ep.windows == 2 and ep.probs["pain"] == 0.6
    assert ep.alerts == ("pain",)


def test_crying_within_the_quiet_period_continues_the_episode():
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=3.0), CLASSES)
    events = tracker.observe(_frames(1.0, 2.0, True, onset=True))
    events += tracker.observe(_frames(2.0, 4.0, False))
    events += tracker.observe(_frames(4.0, 5.0, True, onset=True))
    events += tracker.observe(_frames(5.0, 12.0, False))
    events += tracker.finish()
    assert _kinds(events) == [("EpisodeOpened", 1), ("EpisodeClosed", 1)]
    assert events[-1].episode.end_s == 5.0


def _span(start_s: float, end_s: float, runs: list[tuple[float, float, float]]) -> Activity:
    """Frames as the gate marks them: each run (first frame, confirmed, end) is active from its confirming frame on."""
    def frame(t: float) -> int:
        return int(round((t - start_s) * SAMPLE_RATE / HOP))

    flags = np.zeros(frame(end_s), bool)
    for _, confirmed, run_end in runs:
        flags[frame(confirmed) - 1 : frame(run_end)] = True
    return Activity(int(start_s * SAMPLE_RATE), HOP, flags.astype(np.float32), flags,
                    tuple(CryOnset(int(first * SAMPLE_RATE), int(confirmed * SAMPLE_RATE)) for first, confirmed, _ in runs))


def test_runs_confirmed_in_one_span_extend_the_episode_in_order():
    """A long span (the batch driver's) may confirm several runs: each one's frames count before the next
    is judged, and a run's own frames never count for the episode it might continue."""
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=3.0), CLASSES)
    events = tracker.observe(_frames(1.0, 2.0, True, onset=True))
    # The second run ends 1.5 s before the third begins, which is 3.5 s after the first run's end.
    events += tracker.observe(_span(2.0, 8.0, [(3.0, 3.5, 4.0), (5.5, 6.0, 7.0)]))
    events += tracker.finish()
    assert _kinds(events) == [("EpisodeOpened", 1), ("EpisodeClosed", 1)]
    assert events[-1].episode.start_s == 1.0 and events[-1].episode.end_s == 7.0

    tracker = EpisodeTracker(EpisodeSettings(quiet_s=3.0), CLASSES)
    events = tracker.observe(_frames(1.0, 2.0, True, onset=True))
    events += tracker.observe(_span(2.0, 8.0, [(5.0, 5.5, 7.0)]))  # confirmed in this span, 3 s after the end
    assert _kinds(events) == [("EpisodeOpened", 1), ("EpisodeClosed", 1), ("EpisodeOpened", 2)]
    assert events[1].episode.end_s == 2.0


def _pending(activity: Activity, since_s: float | None) -> Activity:
    return replace(activity, pending_since=None if since_s is None else int(since_s * SAMPLE_RATE))


def _typed_episode(quiet_s: float = 3.0) -> EpisodeTracker:
    """An episode of crying from 1 s to 2 s, typed by a window."""
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=quiet_s), CLASSES)
    tracker.observe(_frames(1.0, 2.0, True, onset=True))
    tracker.classify(_prediction(0.5, (0.1, 0.7, 0.2)), [])
    return tracker


def test_a_run_still_being_decided_within_the_quiet_period_holds_the_episode_open():
    """The gate gives a confirmed run its first frames and earlier bouts, up to 3 s before it confirms
    it: one that starts within the quiet period can be confirmed after it has passed."""
    tracker = _typed_episode()
    assert tracker.observe(_pending(_frames(2.0, 5.5, False), 4.5)) == []  # quiet 3.5 s, a run pending since 4.5 s
    assert tracker.current is not None and tracker.current.end == 2 * SAMPLE_RATE  # pending frames do not extend it
    events = tracker.observe(_activity(5.5, [True] * 25, onsets_s=(4.5,), confirmed_s=5.52))  # confirmed: continues it
    events += tracker.classify(_prediction(4.5, (0.1, 0.7, 0.2)), [])
    events += tracker.observe(_frames(6.0, 9.5, False))
    assert _kinds(events) == [("EpisodeUpdated", 1), ("EpisodeClosed", 1)]
    assert events[-1].episode.start_s == 1.0 and events[-1].episode.end_s == 6.0

    tracker = _typed_episode()
    assert tracker.observe(_pending(_frames(2.0, 5.5, False), 4.5)) == []
    [closed] = tracker.observe(_frames(5.5, 5.6, False))  # the pending run was dropped: closed at the next frames
    assert isinstance(closed, EpisodeClosed) and closed.episode.end_s == 2.0


def test_a_run_pending_after_the_quiet_period_or_for_too_long_does_not_hold_the_episode():
    tracker = _typed_episode()
    [closed] = tracker.observe(_pending(_frames(2.0, 5.5, False), 5.2))  # would start 3.2 s after the end: a new episode
    assert isinstance(closed, EpisodeClosed) and closed.episode.end_s == 2.0

    tracker = _typed_episode()  # the detector hovers between its thresholds: held 3 s past the quiet period at most
    assert tracker.observe(_pending(_frames(2.0, 7.9, False), 4.5)) == []
    [closed] = tracker.observe(_pending(_frames(7.9, 8.0, False), 4.5))
    assert isinstance(closed, EpisodeClosed) and closed.episode.end_s == 2.0


def test_a_new_run_after_the_quiet_period_is_a_new_episode():
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=3.0), CLASSES)
    events = tracker.observe(_frames(1.0, 2.0, True, onset=True))
    events += tracker.observe(_frames(2.0, 9.0, False))
    events += tracker.observe(_frames(9.0, 10.0, True, onset=True))
    events += tracker.finish()
    assert _kinds(events) == [("EpisodeOpened", 1), ("EpisodeClosed", 1), ("EpisodeOpened", 2), ("EpisodeClosed", 2)]


def test_closing_waits_for_the_windows_that_type_the_episode():
    """The embedder lags the detector: an episode past its quiet period waits for its windows."""
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=3.0), CLASSES)
    tracker.classify(_prediction(0.0, None), [])
    tracker.observe(_frames(1.0, 3.0, True, onset=True))
    assert tracker.observe(_frames(3.0, 7.0, False)) == []  # quiet, but no window has reached 3 s yet
    tracker.classify(_prediction(1.5, (0.1, 0.2, 0.7)), [])
    [closed] = tracker.observe(_frames(7.0, 7.1, False))
    assert closed.episode.label == "hunger"


def test_open_episode_is_closed_at_end_of_input():
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=30), CLASSES)
    tracker.observe(_frames(0.0, 2.0, True, onset=True))
    [closed] = tracker.finish()
    assert isinstance(closed, EpisodeClosed) and closed.episode.end_s == 2.0
    assert tracker.finish() == []


def test_windows_outside_an_episode_type_nothing():
    tracker = EpisodeTracker(EpisodeSettings(), CLASSES)
    assert tracker.classify(_prediction(0.0, (0.2, 0.7, 0.1)), []) == []
    assert tracker.observe(_frames(0.0, 2.0, False)) == []


def test_a_late_window_alerts_for_the_episode_it_belongs_to():
    """Frames run ahead of the embedder: a new onset may close episode 1 before its last windows are typed."""
    tracker = EpisodeTracker(EpisodeSettings(quiet_s=3.0), CLASSES)
    tracker.observe(_frames(1.0, 3.0, True, onset=True))
    tracker.observe(_frames(3.0, 9.0, False))  # quiet, but episode 1 waits for its windows
    events = tracker.observe(_frames(9.0, 10.0, True, onset=True))  # a new cry: 1 closes, 2 opens
    assert _kinds(events) == [("EpisodeClosed", 1), ("EpisodeOpened", 2)]
    raised, updated = tracker.classify(_prediction(1.5, (0.1, 0.8, 0.1)), [PAIN])
    assert isinstance(raised, AlertStarted) and raised.episode == 1
    assert isinstance(updated, EpisodeUpdated) and updated.episode.number == 1
    assert updated.episode.alerts == ("pain",) and not updated.episode.ongoing  # published again, still closed
    assert tracker.current is not None and not tracker.current.alerts
