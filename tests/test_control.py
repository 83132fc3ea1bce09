"""Acknowledging from a dashboard: the control channel on real sockets, the alarm command as a real
process, and the whole path through a running service to its SQLite log."""
import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
import soundfile
import zmq

from monitor.audio import load_audio
from monitor.bus import BusError, Envelope, Subscriber
from monitor.bus.control import OWN_SOCKET, ControlReply, ControlRequest, ControlServer, reachable, send_request
from monitor.bus.notify import CommandNotifier
from monitor.cli import main
from monitor.config import BusSettings, ConfigError, Settings
from monitor.messages import AlarmAcknowledged, AlarmRaised
from monitor.service import Service
from tests.conftest import PROJECT_ROOT, Lines, cry_path, crywatch_command, free_endpoint, pick, wait_for_event
from tests.test_bus import ALARM, WALL


@pytest.fixture
def runtime_dir(monkeypatch):
    """A user runtime folder other users may pass through (like /run/user/UID's parent), so that only the
    control socket's own folder and mode decide who gets in."""
    folder = tempfile.mkdtemp(prefix="cw-", dir="/tmp")
    os.chmod(folder, 0o755)
    monkeypatch.delenv("RUNTIME_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _serving(handler, endpoint: str = "tcp://127.0.0.1:*"):
    server = ControlServer(endpoint, handler)
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


def test_acknowledging_a_real_cry_alarm_reaches_the_monitor_and_its_log(settings, models, cries_index, tmp_path,
                                                                      runtime_dir):
    [row] = pick(cries_index, 1, source="corvin", label="pain")
    # The 8 s cry alone ends ~5 s after its alarm, and the end clears every alarm and closes the
    # control channel: 60 s of silence after it keep the monitor up; the test stops it once acknowledged.
    clip = tmp_path / "cry-then-silence.wav"
    soundfile.write(clip, np.concatenate([load_audio(cry_path(row)), np.zeros(60 * 16_000, np.float32)]), 16_000)
    paged = tmp_path / "paged.jsonl"
    command = _script(tmp_path, f"import sys\nopen({str(paged)!r}, 'a').write(sys.stdin.read() + '\\n')\n")
    configured = settings.with_overrides(
        audio={"input": str(clip), "speed": 1.0}, store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-9"},  # the default control: its own socket
        alerts={"command": command, "crying_s": 5.0})  # a cry alone is a short spell: crying alarm after 5 s
    service = Service(configured, models=models)
    subscriber = Subscriber([service.bus_endpoint])
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        events, deadline = [], time.monotonic() + 30
        alarm = wait_for_event(subscriber, AlarmRaised, events, deadline, "no alarm was raised for a real cry").alarm
        assert alarm.label == "crying" and alarm.priority.value == "medium" and not alarm.technical
        reply = send_request(service.control_endpoint, ControlRequest("acknowledge", "jd", alarm.id))
        assert reply.ok and [a.acknowledged_by for a in reply.alarms if a.id == alarm.id] in ([], ["JD"])
        wait_for_event(subscriber, AlarmAcknowledged, events, deadline, "the acknowledgement was not published")
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


def test_the_default_control_channel_is_a_socket_only_the_services_user_and_group_can_open(runtime_dir):
    assert BusSettings().control == OWN_SOCKET
    server, stop, thread = _serving(lambda r: ControlReply(True), OWN_SOCKET)
    try:
        path = server.endpoint.removeprefix("ipc://")
        assert server.endpoint.startswith(f"ipc://{runtime_dir}/crywatch/control-")
        assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o660
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) & 0o007 == 0
        assert send_request(server.endpoint, ControlRequest("acknowledge", "AB")).ok
    finally:
        stop.set()
        thread.join()
        server.close()
    assert not os.path.exists(path)  # gone with the monitor


def test_sockets_of_monitors_killed_outright_are_removed_by_the_next_one(runtime_dir):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = os.path.join(runtime_dir, "crywatch")
    os.makedirs(folder, mode=0o750)
    left = os.path.join(folder, f"control-{dead.stdout.strip()}-0badf00d.sock")
    alive = os.path.join(folder, f"control-{os.getpid()}-0000cafe.sock")
    for path in (left, alive):
        open(path, "w").close()
    server = ControlServer(OWN_SOCKET, lambda r: ControlReply(True))
    server.close()
    assert not os.path.exists(left) and os.path.exists(alive)


def _as_user(endpoint: str, groups: str) -> str:
    """What a request from another local user (nobody, in `groups`) gets: 'answered' or why not."""
    client = ("import sys, zmq\n"
              "s = zmq.Context.instance().socket(zmq.REQ); s.setsockopt(zmq.LINGER, 0); s.connect(sys.argv[1])\n"
              "s.send(b'{\"op\": \"acknowledge\", \"by\": \"XX\"}')\n"
              "print('answered' if s.poll(1500) else 'no answer')\n")
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", f"--groups={groups}" if groups else "--clear-groups",
                             sys.executable, "-c", client, endpoint], capture_output=True, text=True, timeout=20, cwd="/")
    return result.stdout.strip() or result.stderr.strip()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to act as another user")
def test_another_local_user_cannot_acknowledge_but_a_member_of_the_services_group_can(runtime_dir):
    requests = []
    server, stop, thread = _serving(lambda r: requests.append(r) or ControlReply(True), OWN_SOCKET)
    try:
        assert _as_user(server.endpoint, "") == "no answer" and requests == []
        assert _as_user(server.endpoint, str(os.getegid())) == "answered" and [r.by for r in requests] == ["XX"]
    finally:
        stop.set()
        thread.join()
        server.close()


def test_a_control_folder_open_to_other_users_is_refused(monkeypatch, tmp_path):
    open_folder = tmp_path / "run"
    open_folder.mkdir()
    os.chmod(open_folder, 0o777)
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(open_folder))
    with pytest.raises(BusError, match="closed to others .mode 777.: any user could reach or replace the control socket"):
        ControlServer(OWN_SOCKET, lambda r: ControlReply(True))


def test_a_tcp_control_channel_without_keys_is_refused_by_the_config():
    with pytest.raises(ConfigError, match="bus.control.*lets any process on this PC acknowledge every alarm"):
        Settings().with_overrides(bus={"control": "tcp://127.0.0.1:*"})
    assert Settings().with_overrides(bus={"control": "tcp://127.0.0.1:*", "keys": "/etc/crywatch/keys"})


def test_the_unit_gives_the_control_socket_a_folder_closed_to_others():
    unit = (PROJECT_ROOT / "systemd" / "crywatch.service").read_text()
    assert "RuntimeDirectory=crywatch" in unit.splitlines()
    mode = next(int(line.split("=")[1], 8) for line in unit.splitlines() if line.startswith("RuntimeDirectoryMode="))
    assert mode & 0o007 == 0


def test_a_flood_of_bad_requests_is_counted_and_logged_in_a_few_lines(caplog):
    server, stop, thread = _serving(lambda r: ControlReply(False, "no such alarm"))
    flooder = zmq.Context.instance().socket(zmq.DEALER)  # a REQ without the wait: 10,000 requests at once
    flooder.setsockopt(zmq.LINGER, 0)
    flooder.connect(server.endpoint)
    try:
        with caplog.at_level(logging.WARNING, logger="monitor.control"):
            for i in range(10_000):
                flooder.send_multipart([b"", b"junk" if i % 2 else b'{"op": "acknowledge", "by": "XX", "alarm": 99}'])
            assert flooder.poll(5000), "the monitor never answered the flood"
            deadline = time.monotonic() + 10
            while "10000 in all" not in caplog.text:  # the flood's tail is logged once its second is up
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.05)
            # Replies past the queue limits of a client that never reads are dropped (a REP socket is a ROUTER underneath): what
            # matters is that every request was read and refused, and that a real client is answered now.
            reply = send_request(server.endpoint, ControlRequest("acknowledge", "AB", 7), timeout_s=5.0)
            assert not reply.ok and reply.error == "no such alarm"
    finally:
        flooder.close()
        stop.set()
        thread.join()
        server.close()
    assert server.refused == 10_001  # the flood and the real client's request
    lines = [r for r in caplog.records if r.name == "monitor.control"]
    assert 1 <= len(lines) <= 10 and "control request refused" in lines[0].getMessage()


def test_a_monitor_bound_to_every_interface_is_reached_where_its_bus_was():
    assert reachable("tcp://0.0.0.0:5558", "tcp://nicu-pc-3:5557") == "tcp://nicu-pc-3:5558"
    assert reachable("tcp://[::]:5558", "tcp://[fd00::3]:5557") == "tcp://[fd00::3]:5558"
    assert reachable("tcp://127.0.0.1:5558", "tcp://nicu-pc-3:5557") == "tcp://127.0.0.1:5558"
    assert reachable("ipc:///run/crywatch/control-1.sock", "tcp://127.0.0.1:5557") == "ipc:///run/crywatch/control-1.sock"


def test_a_control_socket_this_dashboard_cannot_open_is_a_clear_error_at_once():
    started = time.monotonic()
    with pytest.raises(BusError, match="cannot open the monitor's control socket /run/nowhere/control.sock: "
                                       "acknowledging needs a dashboard on the monitor's PC"):
        send_request("ipc:///run/nowhere/control.sock", ControlRequest("acknowledge", "AB"))
    assert time.monotonic() - started < 0.5


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def test_a_huge_control_request_is_dropped_unread_and_a_long_one_is_quoted_in_part(runtime_dir, tmp_path):
    """The fault: a 50 MB request was read, echoed into a 50 MB log line and a 50 MB reply (the monitor at
    270 MiB). A real monitor: ZeroMQ drops what is over the limit before it is read; what is under it and
    refused is quoted back and logged in part."""

    monitor = subprocess.Popen(
        crywatch_command("run", "--headless", "--input", "scenario:quiet", "--speed", "1", "--bed", "bed-big",
                         "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus", free_endpoint()),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = Lines(monitor.stdout), Lines(monitor.stderr)
    try:
        endpoint = re.search(r"control on (ipc://\S+),", out.wait_for(r"control on ipc://", timeout=120)).group(1)
        out.wait_for(r"\] listening")
        before = _peak_rss_mb(monitor.pid)
        huge = zmq.Context.instance().socket(zmq.REQ)
        huge.setsockopt(zmq.LINGER, 0)
        huge.connect(endpoint)
        huge.send(b'{"op": "acknowledge", "by": "' + b"A" * 50_000_000 + b'"}')
        assert not huge.poll(3000), "the monitor read and answered a 50 MB request"
        huge.close()
        long = send_request(endpoint, ControlRequest("acknowledge", "A" * 10_000, 1), timeout_s=5.0)
        assert not long.ok and long.error.startswith("'AAAAAAAAAAAAAAAAAAAA'... (10000 characters) is not staff initials")
        assert len(long.error) < 200
        junk = send_request(endpoint, ControlRequest("x" * 10_000, "AB", 1), timeout_s=5.0)  # type: ignore[arg-type]
        assert not junk.ok and junk.error.startswith("malformed control request") and len(junk.error) < 400
        refused = send_request(endpoint, ControlRequest("acknowledge", "AB", 99), timeout_s=5.0)
        assert not refused.ok and refused.error == "no active alarm 99 (it may have cleared already)"
        assert _peak_rss_mb(monitor.pid) - before < 40, "the huge request was read into memory"
        assert monitor.poll() is None
        monitor.send_signal(signal.SIGTERM)
        assert monitor.wait(timeout=30) == 0
    finally:
        monitor.kill()
    err.wait_for("control request refused")
    assert max(len(line) for line in err.lines + out.lines) < 1000


def test_a_control_socket_named_in_a_folder_others_can_write_is_refused(runtime_dir, tmp_path, capfd):
    """The fault: the folder check applied to the default socket only; one named in [bus] control was
    accepted in a world-writable folder."""
    open_folder = tmp_path / "shared"
    open_folder.mkdir()
    os.chmod(open_folder, 0o777)
    with pytest.raises(BusError, match=r"shared is not a folder of this user's closed to others \(mode 777\)"):
        ControlServer(f"ipc://{open_folder}/control.sock", lambda r: ControlReply(True))
    config = tmp_path / "config.toml"
    config.write_text(f'[bus]\ncontrol = "ipc://{open_folder}/control.sock"\n')
    capfd.readouterr()
    assert main(["--config", str(config), "run", "--headless", "--input", "scenario:quiet",
                 "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus", free_endpoint()]) == 2
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith(f"crywatch: error: {open_folder} is not a folder of this user's closed to others")
    private = tmp_path / "private"
    private.mkdir(mode=0o750)
    server = ControlServer(f"ipc://{private}/control.sock", lambda r: ControlReply(True))
    try:
        assert stat.S_IMODE(os.stat(private / "control.sock").st_mode) == 0o660
    finally:
        server.close()
