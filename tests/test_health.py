"""The health supervisor on its own: what the service observes → technical-alarm causes, on a fake clock."""
from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.audio import AudioError
from monitor.config import ServiceSettings
from monitor.health import (
    BAD_AUDIO_CLEARS_S,
    DISK_CHECK_S,
    MIC_RETRY_MAX_S,
    Fault,
    HealthSupervisor,
    Observed,
    StageBeat,
    sd_notify,
    stage_lags,
)
from monitor.messages import SAMPLE_RATE

SETTINGS = ServiceSettings(stall_s=5.0, stage_timeout_s=30.0, muted_s=30.0, max_lag_s=10.0)
MAX_LAG = int(SETTINGS.max_lag_s * SAMPLE_RATE)
HEALTHY = Observed(end=0, last_sound=0, nonfinite=0, live=True, lost=False, source="microphone 'test'",
                   stages=(StageBeat("gate", True, 0.0), StageBeat("embedder", True, 0.0)), lags={"gate": 0},
                   skipped_s=0.0, server_fault=None)


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class Microphone:
    """Reopens only once `back` is set; records what the supervisor asked of it."""

    def __init__(self) -> None:
        self.released = 0
        self.tries: list[float] = []
        self.back = False
        self.clock: Clock | None = None

    def release(self) -> None:
        self.released += 1

    def reopen(self) -> str:
        assert self.clock is not None
        self.tries.append(self.clock.now)
        if not self.back:
            raise AudioError("no microphone found")
        return "microphone 'test' (again)"


def _supervisor(clock: Clock, microphone: Microphone | None = None, max_lag: int | None = MAX_LAG,
                folder: Path | None = None, free_bytes=lambda _: 10**12) -> HealthSupervisor:
    microphone = microphone or Microphone()
    microphone.clock = clock
    return HealthSupervisor(SETTINGS, max_lag, folder, 200.0, release=microphone.release, reopen=microphone.reopen,
                            end=0, now=clock.now, free_bytes=free_bytes)


def _flowing(seen: Observed, clock: Clock, seconds: float) -> Observed:
    """`seconds` more of sound, the stages beating."""
    end = seen.end + int(seconds * SAMPLE_RATE)
    return replace(seen, end=end, last_sound=end, stages=tuple(replace(s, last_beat=clock.now) for s in seen.stages))


def _beating(seen: Observed, clock: Clock) -> Observed:
    return replace(seen, stages=tuple(replace(s, last_beat=clock.now) for s in seen.stages))


def test_a_healthy_service_raises_nothing_and_keeps_up():
    clock = Clock()
    health = _supervisor(clock)
    seen = HEALTHY
    for _ in range(100):
        clock.advance(0.1)
        seen = _flowing(seen, clock, 0.1)
        assert list(health.check(seen, clock.now)) == []
    assert health.problems == [] and health.keeps_up


def test_a_stalled_ring_is_a_silent_microphone_after_stall_s_and_clears_when_audio_flows():
    clock = Clock()
    health = _supervisor(clock)
    seen = _flowing(HEALTHY, clock, 1.0)
    assert list(health.check(seen, clock.now)) == []
    clock.advance(SETTINGS.stall_s)  # exactly stall_s without audio: not yet
    assert list(health.check(_beating(seen, clock), clock.now)) == []
    clock.advance(0.1)
    assert list(health.check(_beating(seen, clock), clock.now)) == [Fault("microphone_silent", True, "nothing for 5.1 s")]
    assert health.problems == ["audio stalled"] and not health.keeps_up  # no watchdog ping: systemd restarts it
    clock.advance(10.0)
    assert list(health.check(_beating(seen, clock), clock.now)) == []  # said once
    clock.advance(0.1)
    assert list(health.check(_flowing(seen, clock, 0.1), clock.now)) == [Fault("microphone_silent", False)]
    assert health.problems == [] and health.keeps_up


def test_a_file_that_pauses_is_not_a_silent_or_muted_microphone():
    clock = Clock()
    health = _supervisor(clock)
    seen = replace(HEALTHY, live=False, end=SAMPLE_RATE, last_sound=0)
    clock.advance(60.0)
    assert list(health.check(_beating(seen, clock), clock.now)) == []


def test_only_zeros_for_muted_s_is_a_muted_microphone():
    clock = Clock()
    health = _supervisor(clock)
    seen = replace(_flowing(HEALTHY, clock, 1.0), end=32 * SAMPLE_RATE)  # 31 s of exact zeros since the last sound
    assert list(health.check(seen, clock.now)) == [Fault("microphone_muted", True, "only zeros for 31 s")]
    assert health.problems == ["microphone muted"]
    clock.advance(0.1)
    sound = _flowing(seen, clock, 0.1)
    assert list(health.check(sound, clock.now)) == [Fault("microphone_muted", False, "only zeros for 0 s")]


def test_nan_samples_are_bad_audio_until_none_came_for_a_while():
    clock = Clock()
    health = _supervisor(clock)
    seen = replace(_flowing(HEALTHY, clock, 1.0), nonfinite=320)
    assert list(health.check(seen, clock.now)) == [Fault("bad_audio", True, "320 samples")]
    clock.advance(1.0)
    seen = replace(_flowing(seen, clock, 1.0), nonfinite=640)
    assert list(health.check(seen, clock.now)) == []  # still the same fault
    clock.advance(BAD_AUDIO_CLEARS_S)
    seen = _flowing(seen, clock, BAD_AUDIO_CLEARS_S)
    assert list(health.check(seen, clock.now)) == []
    clock.advance(0.1)
    assert list(health.check(_flowing(seen, clock, 0.1), clock.now)) == [Fault("bad_audio", False)]


def test_a_stage_silent_for_stage_timeout_s_is_hung_until_every_hung_stage_beats_again():
    clock = Clock()
    health = _supervisor(clock)
    seen = _flowing(HEALTHY, clock, 1.0)
    assert list(health.check(seen, clock.now)) == []
    clock.advance(31.0)
    gate_only = replace(_flowing(seen, clock, 31.0), stages=(StageBeat("gate", True, clock.now),
                                                           StageBeat("embedder", True, clock.now - 31.0)))
    assert list(health.check(gate_only, clock.now)) == [Fault("stage_hung", True, "embedder made no progress for 31 s")]
    assert health.problems == ["embedder hung"] and not health.keeps_up
    clock.advance(1.0)
    both = replace(gate_only, stages=(StageBeat("gate", True, clock.now - 31.0), StageBeat("embedder", True, 0.0)))
    assert list(health.check(both, clock.now)) == [Fault("stage_hung", True, "gate made no progress for 31 s")]
    assert health.problems == ["embedder hung", "gate hung"]
    clock.advance(1.0)
    gate_back = replace(both, stages=(StageBeat("gate", True, clock.now), StageBeat("embedder", True, 0.0)))
    assert list(health.check(gate_back, clock.now)) == []  # one still hung: the alarm stays
    clock.advance(1.0)
    assert list(health.check(_beating(gate_back, clock), clock.now)) == [Fault("stage_hung", False)]
    clock.advance(60.0)
    ended = replace(gate_back, stages=(StageBeat("gate", False, 0.0), StageBeat("embedder", False, 0.0)))
    assert list(health.check(_flowing(ended, clock, 60.0), clock.now)) == []  # a finished stage is not hung


def test_a_stage_beyond_max_lag_is_behind_until_it_is_under_half_of_it():
    clock = Clock()
    health = _supervisor(clock)
    seen = _flowing(HEALTHY, clock, 1.0)
    at_limit = replace(seen, lags={"gate": 0, "embedder": MAX_LAG, "classifier": MAX_LAG})
    assert list(health.check(at_limit, clock.now)) == []
    behind = replace(seen, lags={"gate": 0, "embedder": MAX_LAG + 1, "classifier": MAX_LAG + SAMPLE_RATE})
    assert list(health.check(behind, clock.now)) == [Fault("monitor_behind", True, "classifier 11.0 s behind the newest audio")]
    assert health.problems == ["behind the audio"] and not health.keeps_up
    over_half = replace(seen, lags={"gate": 0, "embedder": MAX_LAG // 2 + 1}, skipped_s=42.0)
    assert list(health.check(over_half, clock.now)) == []  # hysteresis: not caught up yet
    caught_up = replace(over_half, lags={"gate": 0, "embedder": MAX_LAG // 2})
    assert list(health.check(caught_up, clock.now)) == [Fault("monitor_behind", False)]


def test_a_gate_the_ring_lapped_is_behind_though_its_lag_is_within_max_lag():
    """Audio the ring overwrote before the gate read it was never judged: behind, whatever the lag bound
    (a max_lag_s as long as the ring once let a lapped gate look healthy)."""
    clock = Clock()
    health = _supervisor(clock)
    seen = _flowing(HEALTHY, clock, 1.0)
    lapping = replace(seen, lags={"gate": MAX_LAG // 2}, overwritten=True)
    assert list(health.check(lapping, clock.now)) == [
        Fault("monitor_behind", True, "the ring overwrote audio the gate had not read (5.0 s behind)")]
    assert not health.keeps_up and health.problems == ["behind the audio"]
    resumed = replace(lapping, overwritten=False, laps=1, lags={"gate": SAMPLE_RATE})  # skipped to the oldest sample
    assert list(health.check(resumed, clock.advance(0.1))) == []  # the lap is counted: still behind at this check
    assert list(health.check(resumed, clock.advance(0.1))) == [Fault("monitor_behind", False)]
    lapped_between_checks = replace(resumed, laps=2)
    assert [f.label for f in health.check(lapped_between_checks, clock.advance(0.1))] == ["monitor_behind"]


def test_a_paced_playback_is_never_behind():
    clock = Clock()
    health = _supervisor(clock, max_lag=None)
    seen = replace(_flowing(HEALTHY, clock, 1.0), live=False, lags={})
    assert list(health.check(seen, clock.now)) == []
    assert health.keeps_up
    # It waits for the gate, so a lap would be a fault of its own, and is reported all the same.
    assert [f.label for f in health.check(replace(seen, laps=1), clock.advance(0.1))] == ["monitor_behind"]


def test_the_logs_disk_is_checked_every_few_seconds_and_low_space_raised_once():
    clock = Clock()
    free = {"bytes": 500e6}
    asked = []

    def free_bytes(folder: Path) -> int:
        asked.append(folder)
        if free["bytes"] is None:
            raise OSError("gone")
        return int(free["bytes"])

    health = _supervisor(clock, folder=Path("/var/lib/crywatch"), free_bytes=free_bytes)
    seen = _flowing(HEALTHY, clock, 1.0)
    assert list(health.check(seen, clock.now)) == [] and len(asked) == 1
    free["bytes"] = 150e6
    clock.advance(DISK_CHECK_S - 0.125)
    assert list(health.check(_flowing(seen, clock, 9.875), clock.now)) == [] and len(asked) == 1  # not yet asked again
    clock.advance(0.125)
    seen = _flowing(seen, clock, 10.0)
    assert list(health.check(seen, clock.now)) == [Fault("disk_nearly_full", True, "150 MB free beside /var/lib/crywatch")]
    free["bytes"] = None  # an unusable folder: the log's own writes say so
    clock.advance(DISK_CHECK_S)
    assert list(health.check(_flowing(seen, clock, 10.0), clock.now)) == []
    free["bytes"] = 900e6
    clock.advance(DISK_CHECK_S)
    assert list(health.check(_flowing(seen, clock, 20.0), clock.now)) == [
        Fault("disk_nearly_full", False, "900 MB free beside /var/lib/crywatch")]


def test_a_log_on_a_server_has_no_disk_to_check():
    clock = Clock()
    asked = []
    health = _supervisor(clock, folder=None, free_bytes=lambda folder: asked.append(folder) or 0)
    assert list(health.check(_flowing(HEALTHY, clock, 1.0), clock.now)) == [] and asked == []


def test_the_embedding_server_going_down_and_coming_back():
    clock = Clock()
    health = _supervisor(clock)
    seen = _flowing(HEALTHY, clock, 1.0)
    down = replace(seen, server_fault="connection refused")
    assert list(health.check(down, clock.now)) == [Fault("embedding_server_down", True, "connection refused")]
    assert list(health.check(replace(down, server_fault="timed out"), clock.now)) == []  # still down: said once
    assert health.problems == ["embedding server down"] and health.keeps_up  # the fallback types cries meanwhile
    assert list(health.check(seen, clock.now)) == [Fault("embedding_server_down", False, "")]


def test_a_lost_microphone_is_released_once_and_reopened_with_backoff():
    clock = Clock()
    microphone = Microphone()
    health = _supervisor(clock, microphone)
    seen = _flowing(HEALTHY, clock, 1.0)
    assert list(health.check(seen, clock.now)) == []
    lost = replace(seen, lost=True)
    faults = health.check(lost, clock.now)
    assert next(faults) == Fault("microphone_lost", True, "microphone 'test'")
    assert microphone.released == 1 and microphone.tries == []  # said before the (slow) reopening is tried
    assert list(faults) == [] and microphone.tries == [clock.now]
    assert health.problems == ["microphone lost"]
    started = clock.now
    for _ in range(int(120 / 0.125)):  # two minutes of ticks (of a binary fraction: the sums stay exact)
        clock.advance(0.125)
        assert list(health.check(_beating(lost, clock), clock.now)) == []  # no stall alarm beside the lost one
    delays = [round(b - a, 1) for a, b in zip(microphone.tries, microphone.tries[1:])]
    assert delays[:6] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0] and max(delays) == MIC_RETRY_MAX_S
    assert microphone.released == 1
    microphone.back = True
    clock.advance(MIC_RETRY_MAX_S)
    assert list(health.check(_beating(lost, clock), clock.now)) == [Fault("microphone_lost", False)]
    assert health.problems == [] and clock.now - started > 120
    clock.advance(SETTINGS.stall_s)  # the stall timer restarted at the reopening
    assert list(health.check(_beating(seen, clock), clock.now)) == []
    clock.advance(0.125)
    assert [f.label for f in health.check(_beating(seen, clock), clock.now)] == ["microphone_silent"]


def test_a_microphone_lost_again_starts_its_backoff_afresh():
    clock = Clock()
    microphone = Microphone()
    microphone.back = True
    health = _supervisor(clock, microphone)
    lost = replace(_flowing(HEALTHY, clock, 1.0), lost=True)
    assert list(health.check(lost, clock.now)) == [Fault("microphone_lost", True, "microphone 'test'"),
                                                   Fault("microphone_lost", False)]
    clock.advance(1.0)
    microphone.back = False
    assert [f.active for f in health.check(_beating(lost, clock), clock.now)] == [True]
    clock.advance(1.875)
    assert list(health.check(_beating(lost, clock), clock.now)) == [] and len(microphone.tries) == 2
    clock.advance(0.125)
    assert list(health.check(_beating(lost, clock), clock.now)) == [] and len(microphone.tries) == 3
    assert microphone.released == 2


def test_stage_lags_are_the_oldest_audio_in_hand_or_the_upstream_lag():
    second = SAMPLE_RATE
    held = [("embedder", (3 * second, None)), ("classifier", (None, None))]
    assert stage_lags(10 * second, 9 * second, held) == {"gate": second, "embedder": 7 * second, "classifier": 7 * second}
    assert stage_lags(10 * second, 11 * second, [("embedder", (None, 8 * second))]) == {"gate": 0, "embedder": 2 * second}


def test_sd_notify_sends_to_systemds_socket_and_is_a_no_op_without_one(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    sd_notify("WATCHDOG=1")  # outside systemd: nothing to do, nothing raised
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        sd_notify("READY=1\nSTATUS=listening")
        assert listener.recv(100) == b"READY=1\nSTATUS=listening"


@pytest.mark.parametrize("live", [True, False])
def test_problems_read_in_a_fixed_order(live):
    clock = Clock()
    microphone = Microphone()
    health = _supervisor(clock, microphone)
    seen = replace(_flowing(HEALTHY, clock, 1.0), live=live, lost=live, nonfinite=1, server_fault="down",
                   lags={"gate": MAX_LAG + 1})
    list(health.check(seen, clock.now))
    expected = ["embedding server down", "bad audio", "behind the audio"]
    assert health.problems == (["microphone lost"] + expected if live else expected)
