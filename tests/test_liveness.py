"""Never deaf while saying "ok": a stage that fell behind alarms, skips ahead and hears again; no output
that nobody reads stalls detection; a file that breaks off midway ends the run with one line and exit 2."""
import fcntl
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import soundfile

from monitor.audio import RingBuffer, load_audio
from monitor.bus import Subscriber
from monitor.bus.control import ControlRequest, send_request
from monitor.config import ConfigError
from monitor.detect import Gate
from monitor.messages import SAMPLE_RATE, AlarmCleared, AlarmRaised, EpisodeOpened, Heartbeat, ServiceStatus, WindowScored
from monitor.service import Service
from tests.conftest import CRIES, PROJECT_ROOT, cry_path, crywatch_command, free_endpoint, pick, run_crywatch


class StallingDetector:
    """The shipped detector, whose streams block in `push` while `stalled` is set: a stage stuck on
    a loaded machine, injected without a sleep in the service's own code."""

    def __init__(self, inner):
        self._inner = inner
        self.stalled = threading.Event()
        self._released = threading.Event()
        self.stalled.set()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def release(self) -> None:
        self.stalled.clear()
        self._released.set()

    def stream(self):
        detector, inner = self, self._inner.stream()

        class Stream:
            def push(self, samples):
                if detector.stalled.is_set():
                    assert detector._released.wait(60), "the test never released the stall"
                return inner.push(samples)

            def flush(self):
                return inner.flush()

        return Stream()


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _cry_recording(cries_index, tmp_path, lead_s: float) -> tuple[str, float]:
    """Quiet room noise for `lead_s`, one real pain cry, 4 s of quiet: (path, cry start in s)."""
    [row] = pick(cries_index, 1, source="corvin", label="pain")
    cry = load_audio(cry_path(row))
    rng = np.random.default_rng(3)
    quiet = lambda s: (0.002 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32)  # noqa: E731
    path = tmp_path / "stall_then_cry.wav"
    soundfile.write(path, np.concatenate([quiet(lead_s), cry, quiet(4.0)]), SAMPLE_RATE)
    return str(path), lead_s


def test_a_gate_lapped_by_the_ring_resumes_at_the_newest_audio(models, settings):
    """The fault: after falling a ring behind once, the gate re-read from before the ring's oldest
    sample on every call, and never decided another frame."""
    gate = Gate(settings.gate, models.detector)
    ring = RingBuffer(6 * SAMPLE_RATE)
    noise = (0.01 * np.random.default_rng(1).standard_normal(20 * SAMPLE_RATE)).astype(np.float32)
    ring.write(noise[: 10 * SAMPLE_RATE])  # 10 s arrive while the gate is stalled: 4 s are overwritten
    first = gate.advance(ring)
    assert first.activity is not None and gate.skipped >= 4 * SAMPLE_RATE and gate.dropped_windows > 0
    ring.write(noise[10 * SAMPLE_RATE :])
    later = gate.advance(ring)
    assert later.activity is not None and later.windows, "the gate stopped judging audio after falling behind"
    assert ring.end - gate.decided_to <= 1.5 * SAMPLE_RATE  # all but the detector's look-ahead


def test_a_gate_far_behind_skips_to_the_newest_audio_and_counts_it(models, settings):
    gate = Gate(settings.gate, models.detector)
    ring = RingBuffer(30 * SAMPLE_RATE)
    ring.write((0.01 * np.random.default_rng(2).standard_normal(20 * SAMPLE_RATE)).astype(np.float32))
    gate.advance(ring, behind_limit=4 * SAMPLE_RATE)  # 20 s behind, 4 s allowed: keeps the newest 1 s
    assert 18.9 * SAMPLE_RATE <= gate.skipped <= 19.1 * SAMPLE_RATE
    assert ring.end - gate.decided_to <= 1.5 * SAMPLE_RATE  # all but the detector's look-ahead (v2: YAMNet's 1 s)


@pytest.mark.parametrize("value", [0.5, 1e9])
def test_the_lag_bound_is_validated_with_the_key_named(settings, value):
    with pytest.raises(ConfigError, match="service.max_lag_s"):
        settings.with_overrides(service={"max_lag_s": value})


def _acknowledge_behind_and_wait_for_the_lap(service, events: list, timeout_s: float) -> None:
    """Technical alarms latch: a nurse acknowledges monitor_behind (it clears once the monitor has caught
    up); then the ring laps the stalled detector."""
    _wait(lambda: any(isinstance(e, AlarmRaised) and e.alarm.label == "monitor_behind" for e in events), timeout_s,
          "the monitor_behind alarm")
    behind = next(e.alarm for e in events if isinstance(e, AlarmRaised) and e.alarm.label == "monitor_behind")
    assert send_request(service.control_endpoint, ControlRequest("acknowledge", "NB", behind.id)).ok
    _wait(lambda: service.ring.oldest > service.pipeline.gate.decided_to + SAMPLE_RATE, timeout_s,
          "the ring to lap the stalled detector")


@pytest.fixture
def watchdog(tmp_path, monkeypatch) -> socket.socket:
    """systemd's notify socket, as the service sees it. Its datagrams are read in the event callback, which runs
    in the supervisor's thread, so each one is known to have been sent before or after the event it is handed."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    yield notify
    notify.close()


def _pets(notify: socket.socket) -> int:
    """Watchdog pets waiting on the notify socket, read and counted."""
    count = 0
    while True:
        try:
            count += notify.recv(4096).count(b"WATCHDOG=1")
        except BlockingIOError:
            return count


def test_a_detector_stalled_longer_than_the_ring_alarms_catches_up_and_hears_the_next_cry(
        settings, models, cries_index, tmp_path, watchdog):
    path, cry_s = _cry_recording(cries_index, tmp_path, lead_s=20.0)
    detector = StallingDetector(models.detector)
    events: list = []
    pets_while_behind: list[int] = []

    def on_message(envelope) -> None:
        event = envelope.event
        if isinstance(event, (AlarmRaised, AlarmCleared)) and event.alarm.label == "monitor_behind":
            pets_while_behind.append(_pets(watchdog))
        events.append(event)

    configured = settings.with_overrides(
        audio={"input": path, "speed": 3.0, "ring_seconds": 10.0}, service={"bed": "bed-test", "max_lag_s": 3.0},
        alerts={"technical_min_s": 0.0},
        store={"url": f"sqlite:///{tmp_path / 'log.db'}"}, bus={"endpoint": free_endpoint(), "heartbeat_s": 0.2})
    service = Service(configured, models=replace(models, detector=detector), on_message=on_message)
    runner = threading.Thread(target=lambda: events.append(service.run()))
    runner.start()
    try:
        _acknowledge_behind_and_wait_for_the_lap(service, events, 20)
        assert service.ring.end < cry_s * SAMPLE_RATE, "the stall must end before the cry is played"
        stalled_beats = [e for e in events if isinstance(e, Heartbeat) and e.health != "ok"]
        assert stalled_beats and stalled_beats[-1].stage_lag_s["gate"] > 6.0
        assert "behind" in stalled_beats[-1].health
    finally:
        detector.release()
        runner.join(60)
    summary = events[-1]
    assert summary.failed is None
    raised = next(i for i, e in enumerate(events) if isinstance(e, AlarmRaised) and e.alarm.label == "monitor_behind")
    cleared = next(i for i, e in enumerate(events) if isinstance(e, AlarmCleared) and e.alarm.label == "monitor_behind")
    opened = [i for i, e in enumerate(events) if isinstance(e, EpisodeOpened)]
    assert raised < cleared and opened and opened[0] > cleared, "the cry after the stall opened no episode"
    assert events[opened[0]].episode.start_s >= cry_s - 1.0
    assert pets_while_behind[1] == 0, "the watchdog was petted while the detector was behind"
    assert _pets(watchdog) > 0, "the watchdog was never petted again after catching up"
    [stopped] = [e for e in events if isinstance(e, ServiceStatus) and e.state == "stopped"]
    assert stopped.detail["skipped_s"] >= 4.0 and stopped.detail["dropped_windows"] > 0
    beats = [e for e in events if isinstance(e, Heartbeat)]
    assert beats[-1].skipped_s >= 4.0 and set(beats[-1].stage_lag_s) == {"gate", "embedder", "classifier"}


def test_a_ring_that_laps_the_stalled_gate_is_monitor_behind_whatever_max_lag_s_allows(
        settings, models, cries_index, tmp_path, watchdog):
    """The fault: with [service] max_lag_s = 60 (its range allows 120) and a shorter ring, a stalled gate was
    lapped, the audio it never read was skipped, and health stayed "ok" with the watchdog petted, because the
    lag never reached 60 s. The config now refuses that pair; beneath it, a lap itself is monitor_behind."""
    path, cry_s = _cry_recording(cries_index, tmp_path, lead_s=20.0)
    detector = StallingDetector(models.detector)
    events: list = []
    # From the alarm on: the pets sent since the previous heartbeat (a heartbeat goes out before its pet).
    pets_since_alarm: list[int] = []

    def on_message(envelope) -> None:
        event = envelope.event
        if isinstance(event, AlarmRaised) and event.alarm.label == "monitor_behind":
            _pets(watchdog)  # those sent before it
            pets_since_alarm.append(0)
        elif isinstance(event, Heartbeat) and pets_since_alarm:
            pets_since_alarm.append(_pets(watchdog))
        events.append(event)

    configured = settings.with_overrides(
        audio={"input": path, "speed": 3.0, "ring_seconds": 10.0}, service={"bed": "bed-lap", "max_lag_s": 5.0},
        store={"url": f"sqlite:///{tmp_path / 'log.db'}"}, bus={"endpoint": free_endpoint(), "heartbeat_s": 0.2})
    with pytest.raises(ConfigError, match=r"service\.max_lag_s: 60 s needs audio\.ring_seconds of at least 65 s"):
        configured.with_overrides(service={"max_lag_s": 60.0})
    # What the config refuses, built past it: the health check must not depend on the config alone.
    configured = replace(configured, service=replace(configured.service, max_lag_s=60.0))
    service = Service(configured, models=replace(models, detector=detector), on_message=on_message)
    runner = threading.Thread(target=lambda: events.append(service.run()))
    runner.start()
    try:
        _wait(lambda: service.ring.oldest > service.pipeline.gate.fed, 30, "the ring to lap the stalled detector")
        _wait(lambda: any(isinstance(e, AlarmRaised) and e.alarm.label == "monitor_behind" for e in events), 10,
              "monitor_behind for the lapped gate")
        _wait(lambda: any(isinstance(e, Heartbeat) and "behind" in e.health for e in events), 10,
              "a heartbeat saying the monitor is behind")
        _wait(lambda: len(pets_since_alarm) > 3, 10, "three heartbeats after the alarm")
        assert detector.stalled.is_set() and service.ring.end < cry_s * SAMPLE_RATE
        [raised] = [e.alarm for e in events if isinstance(e, AlarmRaised) and e.alarm.label == "monitor_behind"]
        assert "overwrote audio the gate had not read" in raised.message
        assert sum(pets_since_alarm) == 0, "the watchdog was petted while the ring lapped the gate"
    finally:
        service.request_stop()  # catching up and hearing the next cry: the test above
        detector.release()
        runner.join(60)
    assert events[-1].failed is None


def test_on_the_virtual_microphone_a_stall_longer_than_the_ring_is_an_alarm_then_a_cry_is_heard(
        virtual_mic, settings, models, held_out, tmp_path):
    """The issue's live case: one stall of the detector longer than the ring, then a pain cry played
    into a real PortAudio input stream."""
    detector = StallingDetector(models.detector)
    events: list = []
    configured = settings.with_overrides(
        audio={"input": "mic", "ring_seconds": 10.0}, service={"bed": "bed-mic", "max_lag_s": 3.0},
        alerts={"technical_min_s": 0.0}, store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
        bus={"endpoint": free_endpoint(), "heartbeat_s": 0.2})
    service = Service(configured, models=replace(models, detector=detector), on_message=lambda m: events.append(m.event))
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        _acknowledge_behind_and_wait_for_the_lap(service, events, 30)
        detector.release()
        _wait(lambda: any(isinstance(e, AlarmCleared) and e.alarm.label == "monitor_behind" for e in events), 10,
              "the monitor to catch up")
        [row] = pick(held_out, 1, source="corvin", label="pain")
        assert subprocess.run(["paplay", f"--device={virtual_mic}", str(cry_path(row))], timeout=60).returncode == 0
        _wait(lambda: any(isinstance(e, EpisodeOpened) for e in events), 5, "an episode for the cry after the stall")
    finally:
        detector.release()
        service.request_stop()
        runner.join(30)
    assert service.skipped_s >= 4.0


def _full_pipe() -> tuple[int, int]:
    """A pipe as small as Linux allows, already full: whoever writes to it blocks until it is read."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"x" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    return read_end, write_end


def test_stdout_and_stderr_nobody_reads_stall_neither_detection_nor_sigterm(tmp_path):
    """Both outputs full from the start: before, the first print blocked the classifier (and the
    supervisor announcing an alarm), and SIGTERM was not honoured."""
    endpoint = free_endpoint()
    out_read, out_write = _full_pipe()
    err_read, err_write = _full_pipe()
    subscriber = Subscriber([endpoint])
    service = subprocess.Popen(
        crywatch_command("--log-level", "info", "run", "--input", "scenario:nicu", "--speed", "8", "--headless",
                         "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus", endpoint, "--bed", "bed-pipe"),
        cwd=PROJECT_ROOT, stdout=out_write, stderr=err_write, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(out_write)
    os.close(err_write)
    try:
        kinds: set[type] = set()
        heartbeats = 0
        deadline = time.monotonic() + 60
        while not (EpisodeOpened in kinds and WindowScored in kinds and heartbeats >= 5):
            assert time.monotonic() < deadline and service.poll() is None, f"detection stalled: saw {kinds}"
            message = subscriber.receive(200)
            if message is not None:
                kinds.add(type(message.event))
                heartbeats += isinstance(message.event, Heartbeat)
        service_windows = 0
        while service_windows < 10:  # windows keep coming after an episode's lines found stdout full
            message = subscriber.receive(500)
            assert message is not None and service.poll() is None, "windows stopped after the first episode"
            service_windows += isinstance(message.event, WindowScored)
        sent = time.monotonic()
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=20)
        assert time.monotonic() - sent < 20 and service.returncode == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        subscriber.close()
        os.close(out_read)
        os.close(err_read)


def _truncated(cries_index, tmp_path, kind: str):
    """A real cry's FLAC, or the same cry as a WAV or AIFF, cut to a third of its bytes (synthesised audio when the
    data is absent). libsndfile plays a WAV or AIFF cut short as if it were complete: only its header says more."""
    whole = tmp_path / f"whole.{kind}"
    if cries_index is not None:
        [row] = pick(cries_index, 1, source="corvin", label="pain")
        samples = load_audio(cry_path(row))
    else:
        samples = (0.3 * np.sin(2 * np.pi * 450 * np.arange(30 * SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
    soundfile.write(whole, samples, SAMPLE_RATE, format=kind.upper(), subtype=None if kind == "flac" else "PCM_16")
    cut = tmp_path / f"cut.{kind}"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    return cut


@pytest.fixture
def index_or_none(request):
    return request.getfixturevalue("cries_index") if CRIES.is_dir() else None


def test_a_wav_or_aiff_holding_less_than_its_header_declares_breaks_off_where_it_ends(tmp_path):
    from monitor.audio import AudioError, stream_audio

    for kind in ("wav", "aiff"):
        cut = _truncated(None, tmp_path, kind)
        played = []
        with pytest.raises(AudioError, match=r"breaks off after 10\.0 s of 30\.0 s .*truncated or damaged"):
            played.extend(stream_audio(cut))
        assert 9.9 * SAMPLE_RATE < sum(map(len, played)) <= 10 * SAMPLE_RATE  # what it holds is played first


@pytest.mark.parametrize("kind", ["flac", "wav"])
def test_a_file_that_breaks_off_ends_run_and_analyze_with_one_line_and_exit_2(index_or_none, tmp_path, kind):
    cut = _truncated(index_or_none, tmp_path, kind)
    analyzed = run_crywatch("analyze", str(cut), timeout=60)
    assert analyzed.returncode == 2 and "Traceback" not in analyzed.stderr
    [line] = analyzed.stderr.strip().splitlines()
    assert line.startswith("crywatch: error: audio file") and "truncated or damaged" in line

    ran = run_crywatch("run", "--input", str(cut), "--speed", "0", "--headless", "--db", f"sqlite:///{tmp_path / 'log.db'}",
                       "--bus", free_endpoint(), timeout=60)
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    errors = [line for line in ran.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "truncated or damaged" in errors[0]
    assert "MONITOR FAILED" in ran.stdout and "(reason=input failed:" in ran.stdout
