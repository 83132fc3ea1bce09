"""A real cry played into a real PortAudio input stream (PulseAudio virtual microphone)."""
import signal
import sqlite3
import subprocess
import time

import numpy as np

from monitor.audio import load_audio
from monitor.bus import Subscriber
from monitor.config import GateSettings
from monitor.gate import FrameAnalyzer
from tests.conftest import PROJECT_ROOT, crywatch_command, cry_path, free_endpoint, pick


def _cry_onset_s(samples: np.ndarray) -> float:
    """Where the gate's own evidence first says 'cry' in the file."""
    analyzer = FrameAnalyzer(GateSettings())
    active = analyzer.analyze(samples).active
    return float(np.argmax(active)) * analyzer.frame / 16000


def test_cry_into_the_microphone_gives_an_episode_row_and_a_bus_event(virtual_mic, cries_index, tmp_path):
    [row] = pick(cries_index, 1, source="corvin", label="pain")
    path = cry_path(row)
    onset = _cry_onset_s(load_audio(path))
    endpoint, db = free_endpoint(), tmp_path / "log.db"
    service = subprocess.Popen(
        crywatch_command("run", "--headless", "--input", "mic", "--db", f"sqlite:///{db}", "--bus", endpoint),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    subscriber = Subscriber([endpoint])
    try:
        deadline = time.monotonic() + 60
        while (message := subscriber.receive(200)) is None or message["type"] != "status":
            assert time.monotonic() < deadline and service.poll() is None, "service never published a heartbeat"
        assert message["data"]["source"].startswith("microphone")

        player = subprocess.Popen(["paplay", f"--device={virtual_mic}", str(path)])
        played_at = time.monotonic()
        event, deadline = None, time.monotonic() + 30
        while event is None and time.monotonic() < deadline:
            message = subscriber.receive(100)
            if message and message["type"] in ("episode_opened", "alert_raised"):
                event = (message, time.monotonic())
        assert player.wait(timeout=60) == 0
        assert event is not None, "no episode or alert event for a real cry"
        latency = event[1] - (played_at + onset)
        print(f"\nonset-to-event latency: {latency:.2f} s ({event[0]['type']}, cry onset {onset:.2f} s into {path.name})")

        service.send_signal(signal.SIGTERM)
        output, _ = service.communicate(timeout=30)
        assert service.returncode == 0, output
    finally:
        subscriber.close()
        service.kill()
    with sqlite3.connect(db) as conn:
        [(label, end, source)] = conn.execute("select label, end, source from episodes").fetchall()
        assert end is not None and source.startswith("microphone")
