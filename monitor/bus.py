"""Live events on ZeroMQ PUB/SUB: the service publishes, any number of dashboards subscribe.

Wire format: two frames, the event's wire name (for SUB prefix filtering) and a UTF-8 JSON
object {"v": SCHEMA_VERSION, "type", "bed", "time" (ISO 8601 UTC), "t" (stream seconds),
"data": the event's fields}. This module is the only place events are encoded or decoded;
msgspec validates every field on the way in, so a malformed or foreign message is one clear
error, never a KeyError deep in a dashboard.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import msgspec
import zmq

from monitor.messages import (
    AlarmAcknowledged,
    AlarmAnnounced,
    AlarmCleared,
    AlarmRaised,
    AlarmSilenced,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeUpdated,
    Heartbeat,
    ServiceStatus,
    WindowEmbedded,
    WindowScored,
    WireEvent,
    seconds,
)

# 2: typed events (alarms with priorities and acknowledgement, heartbeats carrying them).
SCHEMA_VERSION = 2

EVENT_TYPES: dict[str, type] = {
    "window": WindowScored,
    "episode_opened": EpisodeOpened,
    "episode_updated": EpisodeUpdated,
    "episode_closed": EpisodeClosed,
    "alarm_raised": AlarmRaised,
    "alarm_announced": AlarmAnnounced,
    "alarm_acknowledged": AlarmAcknowledged,
    "alarm_silenced": AlarmSilenced,
    "alarm_cleared": AlarmCleared,
    "service_status": ServiceStatus,
    "heartbeat": Heartbeat,
}
_WIRE_NAMES = {cls: name for name, cls in EVENT_TYPES.items()}


class BusError(RuntimeError):
    """The bus endpoint cannot be used, or a message cannot be read; the message says why and the fix."""


class SchemaMismatch(BusError):
    """A peer speaks another schema version: monitors and dashboards must run the same CryWatch."""


@dataclass(frozen=True)
class Envelope:
    """An event as it travels: which bed, and the wall-clock time the event refers to. Only wire
    events are encoded; a WindowEmbedded envelope goes from the service to its log only."""

    bed: str
    time: str  # ISO 8601 UTC
    event: WireEvent | WindowEmbedded

    @property
    def t(self) -> float:
        """The event's time in the monitor's stream, in seconds."""
        return seconds(self.event.time)


def wire_name(event: Any) -> str:
    try:
        return _WIRE_NAMES[type(event)]
    except KeyError:
        raise TypeError(f"{type(event).__name__} is not a wire event") from None


def encode(envelope: Envelope) -> tuple[bytes, bytes]:
    """(topic, body) frames."""
    name = wire_name(envelope.event)
    body = msgspec.json.encode({"v": SCHEMA_VERSION, "type": name, "bed": envelope.bed, "time": envelope.time,
                                "t": round(envelope.t, 3), "data": envelope.event})
    return name.encode(), body


def decode(body: bytes) -> Envelope:
    """The envelope in `body`; SchemaMismatch for another version, BusError for anything malformed."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BusError(f"unreadable bus message ({exc})") from exc
    if not isinstance(raw, dict):
        raise BusError("unreadable bus message (not a JSON object)")
    if raw.get("v") != SCHEMA_VERSION:
        raise SchemaMismatch(f"bed {raw.get('bed', '?')} speaks bus schema {raw.get('v')!r}, this reader speaks "
                             f"{SCHEMA_VERSION}: run the same CryWatch version on monitors and dashboards")
    cls = EVENT_TYPES.get(raw.get("type", ""))
    if cls is None:
        raise BusError(f"bus message of unknown type {raw.get('type')!r} from bed {raw.get('bed', '?')}")
    try:
        event: WireEvent = msgspec.convert(raw.get("data"), cls)
        return Envelope(msgspec.convert(raw.get("bed"), str), msgspec.convert(raw.get("time"), str), event)
    except msgspec.ValidationError as exc:
        raise BusError(f"malformed {raw['type']} message from bed {raw.get('bed', '?')}: {exc}") from exc


def bind(kind: int, endpoint: str, role: str, config_key: str, linger_ms: int, context: zmq.Context | None = None,
         secure: Callable[[zmq.Socket], None] | None = None) -> tuple[zmq.Socket, str]:
    """A socket of `kind` bound to `endpoint` (CURVE first, if `secure`), and the endpoint it got."""
    socket = (context or zmq.Context.instance()).socket(kind)
    socket.setsockopt(zmq.LINGER, linger_ms)
    if secure is not None:
        secure(socket)
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        socket.close()
        raise BusError(f"cannot bind {role} {endpoint} ({exc}): another crywatch may be running; "
                       f"set [bus] {config_key} to a free port") from exc
    return socket, socket.getsockopt_string(zmq.LAST_ENDPOINT)


class Publisher:
    """Owned by one thread: ZeroMQ sockets are not thread-safe. `secure` sets CURVE on the socket
    (monitor/keys.py) before it binds."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None,
                 secure: Callable[[zmq.Socket], None] | None = None):
        def limited(socket: zmq.Socket) -> None:
            socket.setsockopt(zmq.SNDHWM, 1000)  # a stuck dashboard costs dropped messages, not memory
            if secure is not None:
                secure(socket)

        self._socket, self.endpoint = bind(zmq.PUB, endpoint, "event bus", "endpoint", 500, context, limited)

    def publish(self, envelope: Envelope) -> None:
        self._socket.send_multipart(list(encode(envelope)))

    def close(self) -> None:
        self._socket.close()


class Subscriber:
    """One SUB socket per endpoint, so a dashboard knows which endpoint each event came from
    (and which endpoint has never answered)."""

    def __init__(self, endpoints: Iterable[str], context: zmq.Context | None = None,
                 secure: Callable[[zmq.Socket], None] | None = None):
        context = context or zmq.Context.instance()
        self.endpoints = tuple(endpoints)
        self._sockets: dict[zmq.Socket, str] = {}
        self._poller = zmq.Poller()
        for endpoint in self.endpoints:
            socket = context.socket(zmq.SUB)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.SUBSCRIBE, b"")
            if secure is not None:
                secure(socket)
            try:
                socket.connect(endpoint)
            except zmq.ZMQError as exc:
                socket.close()
                self.close()
                raise BusError(f"cannot connect to {endpoint} ({exc}): use e.g. tcp://127.0.0.1:5557") from exc
            self._sockets[socket] = endpoint
            self._poller.register(socket, zmq.POLLIN)

    def receive_from(self, timeout_ms: int) -> tuple[str, Envelope] | None:
        """(endpoint, event) for the next event, or None after `timeout_ms`.

        BusError (SchemaMismatch) for one that cannot be read, naming the endpoint it came from."""
        ready = dict(self._poller.poll(timeout_ms))
        for socket, endpoint in self._sockets.items():
            if socket in ready:
                _topic, body = socket.recv_multipart()
                try:
                    return endpoint, decode(body)
                except BusError as exc:
                    raise type(exc)(f"{endpoint}: {exc}") from exc
        return None

    def receive(self, timeout_ms: int) -> Envelope | None:
        received = self.receive_from(timeout_ms)
        return None if received is None else received[1]

    def close(self) -> None:
        for socket in self._sockets:
            socket.close()
        self._sockets.clear()
