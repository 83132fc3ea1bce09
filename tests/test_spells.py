"""Crying spells: timing and crying time from detector frames, type from the head's windows, closing after
the quiet period, and the alarms a spell raises (type on its evidence, crying on its time, high pitch)."""
from dataclasses import replace

import numpy as np
import pytest

from monitor.config import AlertSettings, EpisodeSettings
from monitor.messages import (
    SAMPLE_RATE,
    Activity,
    AlertEnded,
    AlertStarted,
    CryOnset,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeUpdated,
    Prediction,
    Priority,
    Window,
)
from monitor.spells import UNTYPED, EvidenceRule, PitchTally, SpellTracker, logit

CLASSES = ("not_cry", "pain", "hunger")
PAIN_RULE = {"pain": EvidenceRule(threshold=0.6, min_windows=2)}
NO_TIME_ALARMS = AlertSettings(crying_s=0, escalate_s=0)


def _tracker(quiet_s: float = 3.0, alerts: AlertSettings = NO_TIME_ALARMS, rules=PAIN_RULE) -> SpellTracker:
    return SpellTracker(EpisodeSettings(quiet_s=quiet_s), alerts, CLASSES, rules)


def _kinds(events) -> list[tuple[str, int]]:
    """(event class, spell number) per event."""
    return [(type(e).__name__, e.episode if isinstance(e, (AlertStarted, AlertEnded)) else e.episode.number)
            for e in events]


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


def _prediction(start_s: float, probs: tuple[float, float, float] | None, pain: float | None = None) -> Prediction:
    """A window; `pain`: its evidence for pain, as a probability (a crying window of a pain-alerting head)."""
    window = Window(int(start_s * SAMPLE_RATE), 1.0 if probs else 0.0, -20.0,
                    np.zeros(32000, np.float32) if probs else None)
    smoothed = np.array(probs if probs else (1.0, 0.0, 0.0))
    evidence = {"pain": logit(pain)} if pain is not None else {}
    return Prediction(window, CLASSES, smoothed if probs else None, smoothed, evidence)


def test_an_episode_opens_at_the_first_cry_frame_not_at_a_window_edge():
    tracker = _tracker()
    assert tracker.observe(_frames(0.0, 1.3, False)) == []
    [opened] = tracker.observe(_activity(1.3, [True] * 10, onsets_s=(1.14,), confirmed_s=1.42))
    assert isinstance(opened, EpisodeOpened)
    assert opened.episode.start_s == 1.14 and opened.episode.detected_s == 1.42
    assert opened.episode.label == UNTYPED and opened.time == int(1.42 * SAMPLE_RATE)


def test_windows_type_the_spell_its_evidence_decides_the_alarm_and_it_ends_with_the_spell():
    tracker = _tracker()
    tracker.observe(_frames(1.0, 4.0, True, onset=True))
    events = tracker.classify(_prediction(0.5, (0.1, 0.7, 0.2), pain=0.7))
    events += tracker.classify(_prediction(1.5, (0.1, 0.5, 0.4), pain=0.65))  # 2 windows, mean evidence >= 0.6
    events += tracker.classify(_prediction(2.5, None))  # ungated: types nothing
    assert _kinds(events) == [("EpisodeUpdated", 1), ("AlertStarted", 1), ("EpisodeUpdated", 1)]
    assert events[1].label == "pain" and events[1].time == int(3.5 * SAMPLE_RATE) and events[1].threshold == 0.6
    tracker.observe(_frames(4.0, 6.9, False))
    assert tracker.current is not None  # quiet for 2.9 s < 3 s
    ended, closed = tracker.observe(_frames(6.9, 7.1, False))
    assert isinstance(ended, AlertEnded) and ended.label == "pain" and ended.reason == "spell ended"
    ep = closed.episode
    assert isinstance(closed, EpisodeClosed) and ep.start_s == 1.0 and ep.end_s == 4.0
    assert ep.label == "pain" and ep.windows == 2 and ep.probs["pain"] == 0.6
    assert ep.alerts == ("pain",) and [(a.kind, a.raised_s) for a in ep.alarms] == [("pain", 3.5)]
    assert ep.crying_s == 3.0 and ep.bouts == 1


def test_crying_within_the_quiet_period_continues_the_episode():
    tracker = _tracker()
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
    tracker = _tracker()
    events = tracker.observe(_frames(1.0, 2.0, True, onset=True))
    # The second run ends 1.5 s before the third begins, which is 3.5 s after the first run's end.
    events += tracker.observe(_span(2.0, 8.0, [(3.0, 3.5, 4.0), (5.5, 6.0, 7.0)]))
    events += tracker.finish()
    assert _kinds(events) == [("EpisodeOpened", 1), ("EpisodeClosed", 1)]
    assert events[-1].episode.start_s == 1.0 and events[-1].episode.end_s == 7.0

    tracker = _tracker()
    events = tracker.observe(_frames(1.0, 2.0, True, onset=True))
    events += tracker.observe(_span(2.0, 8.0, [(5.0, 5.5, 7.0)]))  # confirmed in this span, 3 s after the end
    assert _kinds(events) == [("EpisodeOpened", 1), ("EpisodeClosed", 1), ("EpisodeOpened", 2)]
    assert events[1].episode.end_s == 2.0


def _pending(activity: Activity, since_s: float | None) -> Activity:
    return replace(activity, pending_since=None if since_s is None else int(since_s * SAMPLE_RATE))


def _typed_episode(quiet_s: float = 3.0) -> SpellTracker:
    """An episode of crying from 1 s to 2 s, typed by a window."""
    tracker = _tracker(quiet_s)
    tracker.observe(_frames(1.0, 2.0, True, onset=True))
    tracker.classify(_prediction(0.5, (0.1, 0.7, 0.2)))
    return tracker


def test_a_run_still_being_decided_within_the_quiet_period_holds_the_episode_open():
    """The gate gives a confirmed run its first frames and earlier bouts, up to 3 s before it confirms
    it: one that starts within the quiet period can be confirmed after it has passed."""
    tracker = _typed_episode()
    assert tracker.observe(_pending(_frames(2.0, 5.5, False), 4.5)) == []  # quiet 3.5 s, a run pending since 4.5 s
    assert tracker.current is not None and tracker.current.end == 2 * SAMPLE_RATE  # pending frames do not extend it
    events = tracker.observe(_activity(5.5, [True] * 25, onsets_s=(4.5,), confirmed_s=5.52))  # confirmed: continues it
    events += tracker.classify(_prediction(4.5, (0.1, 0.7, 0.2)))
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
    tracker = _tracker()
    events = tracker.observe(_frames(1.0, 2.0, True, onset=True))
    events += tracker.observe(_frames(2.0, 9.0, False))
    events += tracker.observe(_frames(9.0, 10.0, True, onset=True))
    events += tracker.finish()
    assert _kinds(events) == [("EpisodeOpened", 1), ("EpisodeClosed", 1), ("EpisodeOpened", 2), ("EpisodeClosed", 2)]


def test_closing_waits_for_the_windows_that_type_the_episode():
    """The embedder lags the detector: an episode past its quiet period waits for its windows."""
    tracker = _tracker()
    tracker.classify(_prediction(0.0, None))
    tracker.observe(_frames(1.0, 3.0, True, onset=True))
    assert tracker.observe(_frames(3.0, 7.0, False)) == []  # quiet, but no window has reached 3 s yet
    tracker.classify(_prediction(1.5, (0.1, 0.2, 0.7)))
    [closed] = tracker.observe(_frames(7.0, 7.1, False))
    assert closed.episode.label == "hunger"


def test_open_episode_is_closed_at_end_of_input():
    tracker = _tracker(30)
    tracker.observe(_frames(0.0, 2.0, True, onset=True))
    [closed] = tracker.finish()
    assert isinstance(closed, EpisodeClosed) and closed.episode.end_s == 2.0
    assert tracker.finish() == []


def test_windows_outside_an_episode_type_nothing():
    tracker = _tracker(EpisodeSettings().quiet_s)
    assert tracker.classify(_prediction(0.0, (0.2, 0.7, 0.1))) == []
    assert tracker.observe(_frames(0.0, 2.0, False)) == []


def test_a_late_window_decides_the_spell_it_belongs_to():
    """Frames run ahead of the embedder: a new onset may close spell 1 before its last windows are typed."""
    tracker = _tracker()
    tracker.observe(_frames(1.0, 3.0, True, onset=True))
    tracker.classify(_prediction(0.5, (0.1, 0.8, 0.1), pain=0.8))
    tracker.observe(_frames(3.0, 9.0, False))  # quiet, but spell 1 waits for its windows
    events = tracker.observe(_frames(9.0, 10.0, True, onset=True))  # a new cry: 1 closes, 2 opens
    assert _kinds(events) == [("EpisodeClosed", 1), ("EpisodeOpened", 2)]
    raised, ended, updated = tracker.classify(_prediction(1.5, (0.1, 0.8, 0.1), pain=0.8))
    assert isinstance(raised, AlertStarted) and raised.episode == 1
    assert isinstance(ended, AlertEnded) and ended.episode == 1  # its spell is over: so is the alarm's condition
    assert isinstance(updated, EpisodeUpdated) and updated.episode.number == 1
    assert updated.episode.alerts == ("pain",) and not updated.episode.ongoing  # published again, still closed
    assert tracker.current is not None and not tracker.current.alarms


def _crying(start_s: float, end_s: float, gap_s: float = 0.0, f0_hz: float | None = None) -> list[Activity]:
    """Bouts of 1 s (confirmed at their first frame) separated by `gap_s` of quiet, in 0.1 s spans as live."""
    spans, t, bout_start = [], start_s, start_s
    while t < end_s - 1e-9:
        crying = t - bout_start < 1.0 - 1e-9
        onset = crying and abs(t - bout_start) < 1e-9
        span = _activity(t, [crying] * 5, (t,) if onset else ())
        if f0_hz is not None:
            span = replace(span, f0_hz=np.where(span.active, f0_hz, np.nan).astype(np.float32))
        spans.append(span)
        t = round(t + 0.1, 3)
        if t - bout_start >= 1.0 + gap_s - 1e-9:
            bout_start = t
    return spans


def _run(tracker: SpellTracker, spans: list[Activity]) -> list:
    return [e for span in spans for e in tracker.observe(span)]


def test_crying_time_counts_cry_frames_not_pauses_and_raises_the_crying_alarm_once_at_its_time():
    tracker = _tracker(alerts=AlertSettings(crying_s=10.0, escalate_s=0))
    events = _run(tracker, _crying(0.0, 30.0, gap_s=1.0))  # 1 s bouts, 1 s pauses: 10 s of crying by 19 s
    started = [e for e in events if isinstance(e, AlertStarted)]
    assert [(e.label, e.time / SAMPLE_RATE, e.message, e.probability) for e in started] == [("crying", 19.0, "CRYING", None)]
    assert tracker.current is not None and tracker.current.bouts == 15 and tracker.current.crying == 15 * SAMPLE_RATE
    events = _run(tracker, _crying(30.0, 31.0)) + tracker.classify(_prediction(30.0, None))  # a window typed it
    events += tracker.observe(_frames(31.0, 35.0, False))
    ended = [e for e in events if isinstance(e, AlertEnded)]
    assert [(e.label, e.reason, e.episode) for e in ended] == [("crying", "spell ended", 1)]
    [closed] = [e for e in events if isinstance(e, EpisodeClosed)]
    assert closed.episode.crying_s == 16.0 and closed.episode.bouts == 16
    assert [(a.kind, a.raised_s) for a in closed.episode.alarms] == [("crying", 19.0)]


def test_a_spell_still_going_after_escalate_s_raises_its_crying_alarm_again_at_high_priority():
    tracker = _tracker(alerts=AlertSettings(crying_s=5.0, escalate_s=20.0))
    events = _run(tracker, _crying(2.0, 40.0, gap_s=1.5))
    started = [(e.label, e.time / SAMPLE_RATE, e.priority, e.message) for e in events if isinstance(e, AlertStarted)]
    assert started == [("crying", 13.0, None, "CRYING"), ("crying", 22.0, Priority.HIGH, "CRYING FOR 20 S")]
    assert [a.priority for a in tracker.current.alarms] == ["", "high"]


def test_a_spell_that_went_quiet_before_escalate_s_does_not_escalate():
    tracker = _tracker(alerts=AlertSettings(crying_s=5.0, escalate_s=20.0))
    events = _run(tracker, _crying(0.0, 8.0)) + tracker.observe(_frames(8.0, 30.0, False))
    assert [e.label for e in events if isinstance(e, AlertStarted)] == ["crying"]


def test_the_crying_alarms_time_is_exact_whatever_the_span():
    """The batch driver hands over 8 s spans: the alarm is still raised at the frame the time was reached."""
    tracker = _tracker(alerts=AlertSettings(crying_s=5.0, escalate_s=0))
    events = tracker.observe(_activity(1.0, [True] * 400, (1.0,)))
    [started] = [e for e in events if isinstance(e, AlertStarted)]
    assert started.time == int(6.0 * SAMPLE_RATE)


def test_a_long_spell_of_another_type_never_alarms_as_pain_and_a_pain_spell_does():
    """The decision is a mean over the spell's crying windows, not N windows over a threshold: 3 minutes of
    windows hovering around the threshold (a bath cry) do not add up to a pain alarm."""
    rng = np.random.default_rng(0)
    for pain_level, alarms in ((0.45, False), (0.75, True)):
        tracker = _tracker(rules={"pain": EvidenceRule(threshold=0.6, min_windows=4)})
        tracker.observe(_frames(0.0, 1.0, True, onset=True))
        events = []
        for i in range(180):
            tracker.observe(_frames(1.0 + i, 2.0 + i, True))
            level = float(np.clip(rng.normal(pain_level, 0.15), 0.01, 0.99))  # single windows cross 0.6 often
            events += tracker.classify(_prediction(float(i), (0.1, level, 0.9 - level), pain=level))
        assert any(isinstance(e, AlertStarted) for e in events) == alarms
        if alarms:  # once, at the 4th crying window at the earliest
            [raised] = [e for e in events if isinstance(e, AlertStarted)]
            assert raised.label == "pain" and raised.time >= 5 * SAMPLE_RATE
            assert tracker.current.label == "pain"
        else:
            assert tracker.current.label == "hunger"  # pain is the larger mean, but its evidence did not decide it


def test_high_pitched_crying_raises_its_alarm_when_its_time_is_reached():
    alerts = AlertSettings(crying_s=0, escalate_s=0, high_pitch_s=4.0)
    tracker = _tracker(alerts=alerts)
    events = _run(tracker, _crying(0.0, 6.0, f0_hz=1250.0))
    assert [(e.label, e.time / SAMPLE_RATE, e.message) for e in events if isinstance(e, AlertStarted)] \
        == [("high_pitch", 4.0, "HIGH-PITCHED CRY")]
    summary = tracker.current.summary(open_=True)
    assert summary.voiced_s == 6.0 and summary.high_pitch_s == 6.0 and summary.high_pitch_share == 1.0
    assert summary.f0_median_hz == pytest.approx(1250, rel=0.01)

    tracker = _tracker(alerts=alerts)
    assert not any(isinstance(e, AlertStarted) for e in _run(tracker, _crying(0.0, 20.0, f0_hz=480.0)))
    assert tracker.current.summary(open_=True).high_pitch_share == 0.0


def test_a_reload_applies_to_the_open_spell():
    tracker = _tracker(alerts=AlertSettings(crying_s=60.0, escalate_s=0))
    events = _run(tracker, _crying(0.0, 20.0))
    assert not any(isinstance(e, AlertStarted) for e in events)
    tracker.reconfigure(AlertSettings(crying_s=10.0, escalate_s=0), PAIN_RULE)  # lowered below its 20 s of crying
    [started, updated] = tracker.observe(_frames(20.0, 20.1, True))
    assert isinstance(started, AlertStarted) and started.label == "crying" and isinstance(updated, EpisodeUpdated)

    tracker.classify(_prediction(0.0, (0.1, 0.8, 0.1), pain=0.9))
    tracker.classify(_prediction(1.0, (0.1, 0.8, 0.1), pain=0.9))
    assert tracker.active_alerts == ["crying", "pain"]
    tracker.reconfigure(AlertSettings(classes=("neurological",), crying_s=10.0, escalate_s=0), {})
    [ended] = tracker.observe(_frames(20.1, 20.2, True))
    assert isinstance(ended, AlertEnded) and ended.label == "pain" and "no longer an alert class" in ended.reason


def test_the_median_pitch_of_a_spell_is_within_a_bin_of_the_exact_one():
    tally = PitchTally()
    f0 = np.random.default_rng(1).lognormal(np.log(480), 0.3, 5000)
    tally.add(np.concatenate([f0, [np.nan] * 100]), 0.02)
    assert tally.median_hz() == pytest.approx(np.median(f0), rel=0.01)
    assert tally.voiced_s == pytest.approx(100.0) and tally.high_s == pytest.approx(0.02 * np.sum(f0 > 1000))
    assert PitchTally().median_hz() is None


def test_a_rule_decides_a_whole_sequence_as_it_decides_window_by_window():
    """Tuning (train/heads/evidence.py) scores whole spells at once: the same decision as the live tracker's."""
    from monitor.spells import TypeEvidence

    rng = np.random.default_rng(3)
    for rule in (EvidenceRule(0.6, 4, 1.5), EvidenceRule(0.5, 2, 0.0), EvidenceRule(0.7, 6, 0.5)):
        for _ in range(50):
            scores = rng.normal(0.3, 1.2, int(rng.integers(1, 40)))
            evidence, live = TypeEvidence(), None
            for i, z in enumerate(scores):
                evidence.add(float(z))
                if live is None and rule.decides(evidence):
                    live = i
            assert rule.decided_at(scores) == live
