"""Acknowledging from a dashboard: the control channel on real sockets, the alarm command as a real
process, and the whole path through a running service to its SQLite log."""
import json
import sqlite3
import sys
import threading
import time

import msgspec
import numpy as np
import pytest
import soundfile
import zmq

from monitor.audio import load_audio
from monitor.bus import BusError, Envelope, Subscriber
from monitor.control import ControlReply, ControlRequest, ControlServer, send_request
from monitor.messages import AlarmAcknowledged, AlarmRaised
from monitor.notify import CommandNotifier
from monitor.service import Service
from tests.conftest import cry_path, free_endpoint, pick
from tests.test_bus import ALARM, WALL


def _serving(handler):
    server = ControlServer("tcp://127.0.0.1:*", handler)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            server.serve_once(50)

    thread = threading.Thread(target=serve)
    thread.start()
    return server, stop, thread


def test_a_request_gets_the_monitors_answer_over_real_sockets():
    seen = []
    server, stop, thread = _serving(lambda r: seen.append(r) or ControlReply(True, alarms=(ALARM,)))
    try:
        reply = send_request(server.endpoint, ControlRequest("acknowledge", "AB", 7))
        assert reply == ControlReply(True, alarms=(ALARM,)) and seen == [ControlRequest("acknowledge", "AB", 7)]
        raw = zmq.Context.instance().socket(zmq.REQ)  # what a foreign client would send
        raw.connect(server.endpoint)
        raw.send(b'{"op": "reboot", "by": "AB"}')
        assert raw.poll(2000)
        refused = msgspec.json.decode(raw.recv(), type=ControlReply)
        raw.close(linger=0)
        assert not refused.ok and "malformed control request" in refused.error
    finally:
        stop.set()
        thread.join()
        server.close()


def test_a_dead_monitor_is_a_bounded_wait_and_a_clear_error():
    started = time.monotonic()
    with pytest.raises(BusError, match="did not answer within 1 s: is it running"):
        send_request(free_endpoint(), ControlRequest("acknowledge", "AB"), timeout_s=0.5, retries=2)
    assert time.monotonic() - started < 3


def _script(tmp_path, body: str) -> str:
    path = tmp_path / "page.py"
    path.write_text(body)
    return f"{sys.executable} {path}"


def test_the_alarm_command_gets_each_event_as_json_and_its_failures_are_logged(tmp_path, caplog):
    out = tmp_path / "paged.jsonl"
    ok = CommandNotifier(_script(tmp_path, f"import sys\nopen({str(out)!r}, 'a').write(sys.stdin.read() + '\\n')\n"), 5)
    ok.start()
    ok.offer(Envelope("bed-2", WALL, AlarmRaised(16_000, ALARM)))
    ok.stop(10)
    [line] = out.read_text().splitlines()
    message = json.loads(line)
    assert message["type"] == "alarm_raised" and message["bed"] == "bed-2" and message["data"]["alarm"]["label"] == "pain"

    # A program that outlives its 2 s timeout: an offer that waited for it would take 2 s, far more than
    # the 1 s allowed (a bound of a few ms would also catch a busy machine merely switching threads).
    slow = CommandNotifier(_script(tmp_path, "import time\ntime.sleep(5)\n"), 2.0)
    failing = CommandNotifier(f"{sys.executable} -c 'import sys; sys.exit(\"pager offline\")'", 5)
    for notifier in (slow, failing):
        notifier.start()
        started = time.monotonic()
        notifier.offer(Envelope("bed-2", WALL, AlarmRaised(16_000, ALARM)))
        assert time.monotonic() - started < 1.0  # offering never waits for the program
        notifier.stop(10)
        assert notifier.failures == 1
    assert "timed out after 2 s" in caplog.text and "exited 1: pager offline" in caplog.text


def test_acknowledging_a_real_pain_alarm_reaches_the_monitor_and_its_log(settings, models, cries_index, tmp_path):
    [row] = pick(cries_index, 1, source="corvin", label="pain")
    # The 8 s cry alone ends ~5 s after its alarm, and the end clears every alarm and closes the
    # control channel: 60 s of silence after it keep the monitor up; the test stops it once acknowledged.
    clip = tmp_path / "cry-then-silence.wav"
    soundfile.write(clip, np.concatenate([load_audio(cry_path(row)), np.zeros(60 * 16_000, np.float32)]), 16_000)
    paged = tmp_path / "paged.jsonl"
    command = _script(tmp_path, f"import sys\nopen({str(paged)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    configured = settings.with_overrides(
        audio={"input": str(clip), "speed": 1.0}, store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
        bus={"endpoint": free_endpoint(), "control": "tcp://127.0.0.1:*"}, service={"bed": "bed-9"},
        alerts={"command": command})
    service = Service(configured, models=models)
    subscriber = Subscriber([service.bus_endpoint])
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        events, deadline = [], time.monotonic() + 30
        while not any(isinstance(e.event, AlarmRaised) for e in events):
            assert time.monotonic() < deadline, "no alarm was raised for a real pain cry"
            if (got := subscriber.receive(100)) is not None:
                events.append(got)
        alarm = next(e.event.alarm for e in events if isinstance(e.event, AlarmRaised))
        assert alarm.label == "pain" and alarm.priority.value == "high" and not alarm.technical
        reply = send_request(service.control_endpoint, ControlRequest("acknowledge", "jd", alarm.id))
        assert reply.ok and [a.acknowledged_by for a in reply.alarms if a.id == alarm.id] in ([], ["JD"])
        while not any(isinstance(e.event, AlarmAcknowledged) for e in events):
            assert time.monotonic() < deadline, "the acknowledgement was not published"
            if (got := subscriber.receive(100)) is not None:
                events.append(got)
    finally:
        service.request_stop()
        runner.join(timeout=60)
        subscriber.close()
    with sqlite3.connect(tmp_path / "log.db") as db:
        acknowledged_by, cleared, episode_id = db.execute(
            "select acknowledged_by, cleared, episode_id from alarms where alarm = ?", (alarm.id,)).fetchone()
    assert acknowledged_by == "JD" and cleared is not None and episode_id is not None
    paged_types = [json.loads(line)["type"] for line in paged.read_text().splitlines()]
    assert paged_types[0] == "alarm_raised" and "alarm_acknowledged" in paged_types
    assert paged_types[-1] == "alarm_cleared"
