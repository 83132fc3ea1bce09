import time
from datetime import datetime, timezone

import pytest

from monitor.bus import SCHEMA_VERSION, BusError, Publisher, Subscriber, to_message
from monitor.messages import Event
from tests.conftest import free_endpoint


def _receive_until(subscriber, publisher, message, want: int, seconds: float = 5.0):
    """PUB/SUB drops what is sent before the subscription lands (slow joiner): keep sending."""
    got, deadline = [], time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        publisher.publish(message)
        received = subscriber.receive(50)
        if received is not None:
            got.append(received)
    return got


def test_events_reach_every_subscriber_over_real_sockets():
    endpoint = free_endpoint()
    publisher = Publisher(endpoint)
    subscribers = [Subscriber([endpoint]) for _ in range(2)]
    wall = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
    message = to_message(Event("alert_raised", 48_000, {"label": "pain", "probability": 0.9}), "bed-3", wall)
    try:
        for subscriber in subscribers:
            [received] = _receive_until(subscriber, publisher, message, 1)
            assert received == {"v": SCHEMA_VERSION, "type": "alert_raised", "bed": "bed-3",
                                "time": "2026-11-27T08:00:00+00:00", "t": 3.0,
                                "data": {"label": "pain", "probability": 0.9}}
    finally:
        publisher.close()
        for subscriber in subscribers:
            subscriber.close()


def test_one_dashboard_can_follow_several_beds():
    endpoints = [free_endpoint(), free_endpoint()]
    publishers = [Publisher(e) for e in endpoints]
    subscriber = Subscriber(endpoints)
    wall = datetime.now(timezone.utc)
    try:
        beds = set()
        deadline = time.monotonic() + 5
        while beds != {"a", "b"} and time.monotonic() < deadline:
            for publisher, bed in zip(publishers, "ab"):
                publisher.publish(to_message(Event("status", 0, {}), bed, wall))
            received = subscriber.receive(50)
            if received:
                beds.add(received["bed"])
        assert beds == {"a", "b"}
    finally:
        subscriber.close()
        for p in publishers:
            p.close()


def test_messages_of_another_schema_version_are_skipped():
    endpoint = free_endpoint()
    publisher, subscriber = Publisher(endpoint), Subscriber([endpoint])
    try:
        future = {"v": SCHEMA_VERSION + 1, "type": "window", "bed": "x", "time": "", "t": 0, "data": {}}
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            publisher.publish(future)
            assert subscriber.receive(20) is None
    finally:
        publisher.close()
        subscriber.close()


def test_a_port_in_use_is_a_clear_error():
    endpoint = free_endpoint()
    first = Publisher(endpoint)
    try:
        with pytest.raises(BusError, match="another crywatch may be running"):
            Publisher(endpoint)
    finally:
        first.close()
