"""The event bus: typed events over real ZeroMQ sockets, encoded and checked in one place."""
import json
import subprocess
import sys
import time

import msgspec
import pytest

from monitor.bus import SCHEMA_VERSION, BusError, Envelope, Publisher, SchemaMismatch, Subscriber, decode, encode
from monitor.config import PROJECT_ROOT
from monitor.messages import (
    Alarm,
    AlarmRaised,
    AlertStarted,
    EpisodeOpened,
    EpisodeSummary,
    Heartbeat,
    Priority,
    ServiceStatus,
    SpellAlarm,
    WindowScored,
)
from tests.conftest import free_endpoint

WALL = "2026-11-27T08:00:00+00:00"
EPISODE = EpisodeSummary(3, 1.5, None, 4.0, 1.9, "pain", {"not_cry": 0.2, "pain": 0.7}, {"pain": 0.9}, 2, crying_s=2.1,
                         bouts=2, voiced_s=1.5, high_pitch_s=0.3, f0_median_hz=480.0, evidence={"pain": 0.8},
                         alarms=(SpellAlarm("pain", 3.5),), start_time=WALL)
ALARM = Alarm(7, "pain", False, Priority.HIGH, "PAIN CRY", WALL, True, True, episode=3, probability=0.81)
EVENTS = [
    WindowScored(48_000, 1.0, -23.5, 0.8, True, {"not_cry": 0.1, "pain": 0.9}, {"not_cry": 0.3, "pain": 0.7}, 0.7,
                 ("pain",)),
    EpisodeOpened(30_400, EPISODE),
    AlarmRaised(48_000, ALARM),
    ServiceStatus(0, "started", {"source": "microphone 'x'"}),
    Heartbeat(64_000, "ok", "mic", "det@1", "acoustic-v2", "head", ("not_cry", "pain"), "tcp://127.0.0.1:1", (ALARM,),
              ("neurological",), EPISODE, (EPISODE,), 0, 0, 0.2, 4.0),
]


def _receive_until(subscriber, publisher, envelope, want: int, seconds: float = 20.0):
    """PUB/SUB drops what is sent before the subscription lands (slow joiner): keep sending."""
    got, deadline = [], time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        publisher.publish(envelope)
        received = subscriber.receive(50)
        if received is not None:
            got.append(received)
    return got


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_kind_round_trips_as_the_same_typed_event(event):
    topic, body = encode(Envelope("bed-3", WALL, event))
    received = decode(body)
    assert received == Envelope("bed-3", WALL, event) and type(received.event) is type(event)
    wire = msgspec.json.decode(body)
    assert wire["v"] == SCHEMA_VERSION and wire["type"] == topic.decode() and wire["t"] == round(event.time / 16000, 3)


def test_events_reach_every_subscriber_over_real_sockets():
    endpoint = free_endpoint()
    publisher = Publisher(endpoint)
    subscribers = [Subscriber([endpoint]) for _ in range(2)]
    envelope = Envelope("bed-3", WALL, EVENTS[2])
    try:
        for subscriber in subscribers:
            [received] = _receive_until(subscriber, publisher, envelope, 1)
            assert received == envelope and received.event.alarm.priority is Priority.HIGH
    finally:
        publisher.close()
        for subscriber in subscribers:
            subscriber.close()


def test_one_dashboard_follows_several_beds_and_knows_which_endpoint_spoke():
    endpoints = [free_endpoint(), free_endpoint()]
    publishers = [Publisher(e) for e in endpoints]
    subscriber = Subscriber(endpoints)
    try:
        heard: dict[str, str] = {}
        deadline = time.monotonic() + 20
        while len(heard) < 2 and time.monotonic() < deadline:
            for publisher, bed in zip(publishers, "ab"):
                publisher.publish(Envelope(bed, WALL, EVENTS[3]))
            received = subscriber.receive_from(50)
            if received:
                heard[received[1].bed] = received[0]
        assert heard == {"a": endpoints[0], "b": endpoints[1]}
    finally:
        subscriber.close()
        for p in publishers:
            p.close()


def test_a_reader_of_another_schema_version_is_refused_with_a_clear_message():
    old = msgspec.json.encode({"v": 1, "type": "alert_raised", "bed": "bed-2", "time": WALL, "t": 0, "data": {}})
    with pytest.raises(SchemaMismatch, match="bed bed-2 speaks bus schema 1, this reader speaks 3: run the same"):
        decode(old)


@pytest.mark.parametrize("body, expected", [
    (b"not json", "unreadable bus message"),
    (b'{"v": 3, "type": "gossip", "bed": "b", "time": "", "data": {}}', "unknown type 'gossip'"),
    (b'{"v": 3, "type": "window", "bed": "b", "time": "", "data": {"time": "soon"}}',
     r"malformed window message from bed b: Expected `int`, got `str` - at `\$.time`"),
    (b'{"v": 3, "type": "alarm_raised", "bed": "b", "time": "", "data": {"time": 1, "alarm": {"priority": "urgent"}}}',
     "malformed alarm_raised message"),
])
def test_malformed_messages_are_one_clear_error(body, expected):
    with pytest.raises(BusError, match=expected):
        decode(body)


def test_only_wire_events_can_be_sent():
    with pytest.raises(TypeError, match="AlertStarted is not a wire event"):
        encode(Envelope("b", WALL, AlertStarted(0, "pain", 0.9, 0.5, None)))  # type: ignore[arg-type]


def test_a_port_in_use_is_a_clear_error():
    endpoint = free_endpoint()
    first = Publisher(endpoint)
    try:
        with pytest.raises(BusError, match="another crywatch may be running"):
            Publisher(endpoint)
    finally:
        first.close()


def test_a_bad_endpoint_is_a_clear_error():
    with pytest.raises(BusError, match="cannot connect to foo"):
        Subscriber(["tcp://127.0.0.1:1", "foo"])


def test_a_port_beyond_65535_is_a_clear_error_not_a_random_port():
    with pytest.raises(BusError, match="tcp://127.0.0.1:99999: the port must be 1..65535, or \\* for any free port"):
        Publisher("tcp://127.0.0.1:99999")


def test_an_ipv6_loopback_endpoint_carries_events():
    port = free_endpoint().rsplit(":", 1)[-1]
    endpoint = f"tcp://[::1]:{port}"
    try:
        publisher = Publisher(endpoint)
    except BusError as exc:
        if "Cannot assign requested address" in str(exc):
            pytest.skip("this machine has no IPv6 loopback")
        raise
    subscriber = Subscriber([endpoint])
    try:
        assert publisher.endpoint == endpoint
        [received] = _receive_until(subscriber, publisher, Envelope("bed-6", WALL, EVENTS[3]), 1)
        assert received.bed == "bed-6"
    finally:
        subscriber.close()
        publisher.close()


def test_an_address_not_on_this_pc_is_not_blamed_on_another_crywatch():
    with pytest.raises(BusError, match="is that address this PC's") as refused:
        Publisher("tcp://192.0.2.1:5557")  # TEST-NET-1: never a local address
    assert "another crywatch" not in str(refused.value)


# A monitor stops while the dashboard is busy: its last events and its disconnect are waiting together
# when the dashboard next reads. Run in a subprocess: libzmq aborts the interpreter when it goes wrong.
_A_MONITOR_STOPS_AND_COMES_BACK = """
import json, sys, time
import zmq
from monitor.bus import BusError, Envelope, Publisher, Subscriber
from monitor.messages import ServiceStatus

endpoint, wall = sys.argv[1:]
def status(n, state):
    return Envelope("bed-1", wall, ServiceStatus(n, state, {}))
def until(condition):
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, "timed out"

subscriber = Subscriber([endpoint])
publisher = Publisher(endpoint)
heard = []
def hear(want):
    received = subscriber.receive(50)
    if received is not None and received.event.time > 0:
        heard.append([received.event.time, received.event.state])
    return received is not None and received.event.time == want
until(lambda: publisher.publish(status(0, "started")) or subscriber.receive(50) is not None)  # the subscription landed
for n, state in [(1, "running"), (2, "running"), (3, "stopped")]:
    publisher.publish(status(n, state))
publisher.close()
zmq.select(list(subscriber._disconnects), [], [], 5)  # the disconnect is waiting behind the events
until(lambda: hear(3))
def restart():
    global publisher
    try:
        publisher = Publisher(endpoint)
    except BusError:  # the port is still held for a moment
        return False
    return True
until(restart)
until(lambda: publisher.publish(status(4, "started")) or hear(4))  # heard again: the dashboard reconnected
publisher.close()
subscriber.close()
print(json.dumps(heard))
"""


def test_a_stopping_monitors_last_events_all_arrive_with_its_disconnect_and_a_restart_is_heard():
    run = subprocess.run([sys.executable, "-c", _A_MONITOR_STOPS_AND_COMES_BACK, free_endpoint(), WALL],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]  # -6 (SIGABRT): "Assertion failed: !_more (src/fq.cpp:80)"
    heard = json.loads(run.stdout)
    assert heard[:3] == [[1, "running"], [2, "running"], [3, "stopped"]] and heard[-1] == [4, "started"]
