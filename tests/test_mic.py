"""Real cries played into a real PortAudio input stream (PulseAudio virtual microphone)."""
import signal
import sqlite3
import subprocess
import time

import numpy as np
import soundfile

from monitor.audio import load_audio
from monitor.bus import Envelope, Subscriber
from monitor.messages import AlarmRaised, EpisodeOpened, Heartbeat
from tests.conftest import PROJECT_ROOT, cry_path, crywatch_command, free_endpoint, pick
from train.detector.mixing import event_bounds

GAP_S = 10.0  # silence before each cry: every episode has closed (quiet_s 6 s) before the next cry


def _wait_for(subscriber: Subscriber, kind: type, service: subprocess.Popen, timeout: float) -> Envelope:
    deadline = time.monotonic() + timeout
    while (message := subscriber.receive(200)) is None or not isinstance(message.event, kind):
        assert time.monotonic() < deadline and service.poll() is None, f"no {kind.__name__} message"
    return message


def test_cries_into_the_microphone_give_episodes_fast(virtual_mic, held_out, tmp_path):
    rows = pick(held_out, 4, source="corvin", label="pain")
    assert len(rows) >= 3
    parts, onsets = [], []
    for row in rows:
        clip = load_audio(cry_path(row))
        bounds = event_bounds(clip)
        assert bounds is not None
        start = sum(len(p) for p in parts) + int(GAP_S * 16000)
        onsets.append((start + bounds[0]) / 16000)
        parts += [np.zeros(int(GAP_S * 16000), np.float32), clip]
    parts.append(np.zeros(int(GAP_S * 16000), np.float32))
    played = tmp_path / "cries.wav"
    soundfile.write(played, np.concatenate(parts), 16000)

    endpoint, db = free_endpoint(), tmp_path / "log.db"
    service = subprocess.Popen(
        crywatch_command("run", "--headless", "--input", "mic", "--db", f"sqlite:///{db}", "--bus", endpoint),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    subscriber = Subscriber([endpoint])
    try:
        heartbeat = _wait_for(subscriber, Heartbeat, service, 60).event
        assert isinstance(heartbeat, Heartbeat) and heartbeat.source.startswith("microphone")
        player = subprocess.Popen(["paplay", f"--device={virtual_mic}", str(played)])
        played_at = time.monotonic()
        received: list[tuple[float, Envelope]] = []
        deadline = played_at + sum(len(p) for p in parts) / 16000 + 3
        while time.monotonic() < deadline:
            message = subscriber.receive(50)
            if message and isinstance(message.event, (EpisodeOpened, AlarmRaised)):
                received.append((time.monotonic() - played_at, message))
        assert player.wait(timeout=60) == 0
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=30)
        assert service.returncode == 0, output
    finally:
        subscriber.close()
        service.kill()

    opened = [(t, m.event.episode) for t, m in received if isinstance(m.event, EpisodeOpened)]
    alerts = [(t, m) for t, m in received if isinstance(m.event, AlarmRaised) and not m.event.alarm.technical]
    print(f"\n{'cry':>3} {'onset s':>8} {'-> episode s':>13} {'(audio needed)':>16} {'-> alert s':>11}")
    episode_latencies = []
    for i, onset in enumerate(onsets):
        nxt = onsets[i + 1] if i + 1 < len(onsets) else np.inf
        mine = [(t, m) for t, m in opened if onset - 1.0 <= t < nxt - 1.0]
        assert mine, f"cry {i + 1} (onset {onset:.2f} s into the recording) opened no episode: {received}"
        t, episode = mine[0]
        episode_latencies.append(t - onset)
        in_stream = episode.detected_s - episode.start_s
        alert = next((ta - onset for ta, _ in alerts if onset <= ta < nxt), None)
        print(f"{i + 1:>3} {onset:8.2f} {t - onset:13.2f} {in_stream:16.2f} "
              f"{'-' if alert is None else f'{alert:.2f}':>11}")
    median = float(np.median(episode_latencies))
    print(f"onset -> episode median {median:.2f} s (wall clock, PulseAudio path included)")
    assert median <= 1.5, f"episodes opened {median:.2f} s after the cries began (median)"
    assert len(opened) == len(onsets), f"{len(opened)} episodes for {len(onsets)} cries"
    with sqlite3.connect(db) as conn:
        rows_logged = conn.execute("select label, end, source from episodes").fetchall()
    assert len(rows_logged) == len(onsets)
    assert all(end is not None and source.startswith("microphone") for _label, end, source in rows_logged)


def test_a_microphone_that_vanishes_is_an_alarm_within_5_s_and_comes_back_in_the_same_process(virtual_mic, tmp_path):
    endpoint = free_endpoint()
    service = subprocess.Popen(
        crywatch_command("run", "--headless", "--input", "mic", "--db", f"sqlite:///{tmp_path / 'log.db'}",
                         "--bus", endpoint),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    subscriber = Subscriber([endpoint])
    try:
        _wait_for(subscriber, Heartbeat, service, 60)
        subprocess.run(["pactl", "unload-module", "module-null-sink"], check=True)  # the device disappears
        gone = time.monotonic()
        alarm = _wait_for(subscriber, AlarmRaised, service, 5).event.alarm
        print(f"\nmicrophone removed -> technical alarm {alarm.label} in {time.monotonic() - gone:.2f} s")
        assert alarm.technical and alarm.priority.value == "high" and alarm.label == "microphone_lost"
        time.sleep(2)
        subprocess.run(["bash", str(PROJECT_ROOT / "tests" / "virtual_mic.sh")], capture_output=True, timeout=60)
        back = time.monotonic()
        deadline, heard = back + 45, []
        while len(heard) < 3 or heard[-1] <= heard[-3]:  # the same process hears audio again
            assert time.monotonic() < deadline and service.poll() is None, f"no audio after the microphone came back: {heard}"
            beat = _wait_for(subscriber, Heartbeat, service, 10).event
            if not any(a.label == "microphone_lost" and a.condition for a in beat.alarms):
                heard.append(beat.heard_s)
        print(f"microphone restored -> audio again in {time.monotonic() - back:.1f} s")
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=30)
        assert service.returncode == 0, output
        assert "is back after" in output
    finally:
        subscriber.close()
        service.kill()
        subprocess.run(["bash", str(PROJECT_ROOT / "tests" / "virtual_mic.sh")], capture_output=True, timeout=60)
    with sqlite3.connect(tmp_path / "log.db") as conn:
        assert conn.execute("select label, technical from alarms").fetchall() == [("microphone_lost", 1)]


def test_a_muted_microphone_is_an_alarm_and_sound_ends_its_cause(virtual_mic, held_out, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[service]\nmuted_s = 2.0\n")  # the virtual microphone idles on exact zeros
    endpoint = free_endpoint()
    service = subprocess.Popen(
        crywatch_command("--config", str(config), "run", "--headless", "--input", "mic",
                         "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus", endpoint),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    subscriber = Subscriber([endpoint])
    try:
        started = time.monotonic()
        alarm = _wait_for(subscriber, AlarmRaised, service, 30).event.alarm
        assert alarm.label == "microphone_muted" and alarm.priority.value == "high", alarm
        print(f"\nmuted microphone -> alarm {time.monotonic() - started:.1f} s after start")
        [row] = pick(held_out, 1, source="corvin", label="pain")
        player = subprocess.Popen(["paplay", f"--device={virtual_mic}", str(cry_path(row))])
        deadline = time.monotonic() + 30
        while True:  # while it plays, the alarm stays (technical alarms are latched) but its cause is gone
            beat = _wait_for(subscriber, Heartbeat, service, 10).event
            if any(a.label == "microphone_muted" and not a.condition for a in beat.alarms):
                break
            assert time.monotonic() < deadline, beat.alarms
        assert player.wait(timeout=60) == 0
        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=30)
        assert service.returncode == 0, output
    finally:
        subscriber.close()
        service.kill()
