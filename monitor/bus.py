"""Live events on ZeroMQ PUB/SUB: the service publishes, any number of dashboards subscribe.

Wire format: two frames, the message type (for SUB prefix filtering) and a UTF-8 JSON object
{"v": SCHEMA_VERSION, "type", "bed", "time" (ISO 8601 UTC), "t" (stream seconds), "data"}.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

import zmq

from monitor.messages import Event, seconds

SCHEMA_VERSION = 1


class BusError(RuntimeError):
    """The bus endpoint cannot be used; the message names it and the fix."""


def to_message(event: Event, bed: str, wall: datetime) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "type": event.kind, "bed": bed, "time": wall.isoformat(),
            "t": round(seconds(event.time), 3), "data": event.data}


class Publisher:
    """Owned by one thread: ZeroMQ sockets are not thread-safe."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None):
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.LINGER, 500)
        self._socket.setsockopt(zmq.SNDHWM, 1000)  # a stuck dashboard costs dropped messages, not memory
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self._socket.close()
            raise BusError(f"cannot bind event bus {endpoint} ({exc}): another crywatch may be running; "
                           "set [bus] endpoint to a free port") from exc
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def publish(self, message: dict[str, Any]) -> None:
        body = json.dumps(message, separators=(",", ":")).encode()
        self._socket.send_multipart([message["type"].encode(), body])

    def close(self) -> None:
        self._socket.close()


class Subscriber:
    def __init__(self, endpoints: Iterable[str], context: zmq.Context | None = None):
        self._context = context or zmq.Context.instance()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.endpoints = tuple(endpoints)
        for endpoint in self.endpoints:
            try:
                self._socket.connect(endpoint)
            except zmq.ZMQError as exc:
                self._socket.close()
                raise BusError(f"cannot connect to {endpoint} ({exc}): use e.g. tcp://127.0.0.1:5557") from exc

    def receive(self, timeout_ms: int) -> dict[str, Any] | None:
        """The next message, or None after `timeout_ms`. Messages of another schema version are skipped."""
        if not self._socket.poll(timeout_ms):
            return None
        _topic, body = self._socket.recv_multipart()
        message = json.loads(body)
        return message if message.get("v") == SCHEMA_VERSION else None

    def close(self) -> None:
        self._socket.close()
