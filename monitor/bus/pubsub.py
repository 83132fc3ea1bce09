"""Live events on ZeroMQ PUB/SUB: the service publishes, any number of dashboards subscribe.

Wire format: two frames, the event's wire name (for SUB prefix filtering) and a UTF-8 JSON
object {"v": SCHEMA_VERSION, "type", "bed", "time" (ISO 8601 UTC), "t" (stream seconds),
"data": the event's fields}. This module is the only place events are encoded or decoded;
msgspec validates every field on the way in, so a malformed or foreign message is one clear
error, never a KeyError deep in a dashboard.
"""
from __future__ import annotations

import errno
import logging
import reprlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import msgspec
import zmq

from monitor.config import has_valid_port
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
# 3: episodes are crying spells (crying time, bouts, pitch, evidence, the alarms each raised); windows carry evidence.
SCHEMA_VERSION = 3
# The largest bus message a reader accepts (ZMQ_MAXMSGSIZE): a heartbeat is a few kB, and a peer
# sending more is dropped by ZeroMQ before it is read into memory (it reconnects at once).
MAX_MESSAGE_BYTES = 1 << 20

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


class _Wire(msgspec.Struct):
    """The envelope's outer fields, read before the event's type is known (any JSON may be in them)."""

    v: Any = None
    type: Any = None
    bed: Any = "?"
    time: Any = None
    data: msgspec.Raw = msgspec.Raw(b"null")


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 40
_BRIEF_CHARS = 120


def _brief(value: Any) -> str:
    """A foreign value in a message, never megabytes of it: reprlib bounds each level, not nested ones together."""
    text = _REPR.repr(value)
    return text if len(text) <= _BRIEF_CHARS else text[: _BRIEF_CHARS - 3] + "..."


def decode(body: bytes) -> Envelope:
    """The envelope in `body`; SchemaMismatch for another version, BusError for anything else that is
    not a valid event (any bytes, any JSON, any nesting depth): decoding raises nothing else."""
    try:
        raw = msgspec.json.decode(body, type=_Wire)
    except (msgspec.MsgspecError, RecursionError) as exc:  # msgspec guards its recursion: RecursionError is safe
        raise BusError(f"unreadable bus message ({str(exc)[:200]})") from None
    bed = raw.bed[:40] if isinstance(raw.bed, str) else _brief(raw.bed)
    if type(raw.v) is not int or raw.v != SCHEMA_VERSION:
        raise SchemaMismatch(f"bed {bed} speaks bus schema {_brief(raw.v)}, this reader speaks "
                             f"{SCHEMA_VERSION}: run the same CryWatch version on monitors and dashboards")
    cls = EVENT_TYPES.get(raw.type) if isinstance(raw.type, str) else None
    if cls is None:
        raise BusError(f"bus message of unknown type {_brief(raw.type)} from bed {bed}")
    if not isinstance(raw.bed, str) or not isinstance(raw.time, str):
        raise BusError(f"malformed {raw.type} message from bed {bed}: bed and time must be strings")
    try:
        event: WireEvent = msgspec.json.decode(raw.data, type=cls)
    except (msgspec.MsgspecError, RecursionError) as exc:
        raise BusError(f"malformed {raw.type} message from bed {bed}: {str(exc)[:200]}") from None
    return Envelope(raw.bed, raw.time, event)


def decode_frames(frames: Sequence[bytes]) -> Envelope:
    """The envelope in a received multipart message: (topic, body), the topic naming the body's type.
    Any other frame count, or a topic that disagrees, is a BusError like any malformed body."""
    if len(frames) != 2:
        raise BusError(f"bus message of {len(frames)} frame(s), expected 2 (topic, body)")
    topic, body = frames
    envelope = decode(body)
    if topic != wire_name(envelope.event).encode():
        raise BusError(f"bus message with topic {_brief(bytes(topic))} holds a {wire_name(envelope.event)} "
                       f"from bed {_brief(envelope.bed)}")
    return envelope


class ThrottledWarning:
    """A problem that may recur thousands of times a second (a flood of malformed messages or
    refused requests): each one is counted, and logged at most once per `interval_s` with the count,
    so a flood costs a counter, not a log line each. `flush` logs what came since the last line."""

    def __init__(self, logger: logging.Logger, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.count = 0
        self.latest = ""
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._reported = 0
        self._next_line = -float("inf")

    def add(self, text: str) -> bool:
        """Counts one occurrence; True if it was logged now."""
        self.count += 1
        self.latest = text
        return self.flush()

    def flush(self) -> bool:
        """Logs the newest problem and the counts, if any came since the last line and a line is due."""
        now = self._clock()
        if self.count == self._reported or now < self._next_line:
            return False
        self._logger.warning("%s (%d like it since the last line, %d in all)", self.latest,
                             self.count - self._reported, self.count)
        self._reported, self._next_line = self.count, now + self._interval_s
        return True


def allow_ipv6(socket: zmq.Socket, endpoint: str) -> None:
    """ZeroMQ sockets speak IPv4 only unless told: an IPv6 address (tcp://[::1]:5557) needs ZMQ_IPV6."""
    if endpoint.startswith("tcp://["):
        socket.setsockopt(zmq.IPV6, 1)


def bind(kind: int, endpoint: str, role: str, config_key: str, linger_ms: int, context: zmq.Context | None = None,
         secure: Callable[[zmq.Socket], None] | None = None) -> tuple[zmq.Socket, str]:
    """A socket of `kind` bound to `endpoint` (CURVE first, if `secure`), and the endpoint it got."""
    if not has_valid_port(endpoint):
        raise BusError(f"cannot bind {role} {endpoint}: the port must be 1..65535, or * for any free port; "
                       f"set [bus] {config_key}")
    socket = (context or zmq.Context.instance()).socket(kind)
    socket.setsockopt(zmq.LINGER, linger_ms)
    allow_ipv6(socket, endpoint)
    if secure is not None:
        secure(socket)
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        socket.close()
        why = ("another crywatch may be running; set [bus] {key} to a free port" if exc.errno == errno.EADDRINUSE
               else "is that address this PC's? set [bus] {key}")
        raise BusError(f"cannot bind {role} {endpoint} ({exc}): {why.format(key=config_key)}") from exc
    return socket, socket.getsockopt_string(zmq.LAST_ENDPOINT)


class Publisher:
    """Owned by one thread: ZeroMQ sockets are not thread-safe. `secure` sets CURVE on the socket
    (monitor/bus/keys.py) before it binds."""

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
        self._disconnects: dict[zmq.Socket, tuple[zmq.Socket, str]] = {}  # each socket's monitor
        self._to_reconnect: set[zmq.Socket] = set()  # disconnected by their peer, connected again once read empty
        self._poller = zmq.Poller()
        for endpoint in self.endpoints:
            socket = context.socket(zmq.SUB)
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.SUBSCRIBE, b"")
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            allow_ipv6(socket, endpoint)
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
            monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            self._disconnects[monitor] = socket, endpoint
            self._poller.register(monitor, zmq.POLLIN)

    def receive_from(self, timeout_ms: int) -> tuple[str, Envelope] | None:
        """(endpoint, event) for the next event, or None after `timeout_ms`.

        BusError (SchemaMismatch) for one that cannot be read, naming the endpoint it came from."""
        ready = dict(self._poller.poll(timeout_ms))
        for monitor, (socket, _) in self._disconnects.items():
            if monitor in ready:
                monitor.recv_multipart()
                # A peer that sent more than MAX_MESSAGE_BYTES is cut off for good (ZeroMQ ends the session
                # on a protocol error without reconnecting): connecting again lets it be heard once it behaves.
                self._to_reconnect.add(socket)
        # Only once nothing is queued: a monitor's last events (its `stopped` status) arrive with its
        # disconnect, and disconnecting a SUB socket that polling has already made fetch the first frame of
        # a message aborts the process at the second frame (libzmq #2163, `!_more` in fq.cpp).
        for socket in [s for s in self._to_reconnect if s not in ready and not s.poll(0)]:
            self._to_reconnect.discard(socket)
            socket.disconnect(self._sockets[socket])
            socket.connect(self._sockets[socket])
        for socket, endpoint in self._sockets.items():
            if socket in ready:
                frames = socket.recv_multipart()
                try:
                    return endpoint, decode_frames(frames)
                except BusError as exc:
                    raise type(exc)(f"{endpoint}: {exc}") from exc
        return None

    def receive(self, timeout_ms: int) -> Envelope | None:
        received = self.receive_from(timeout_ms)
        return None if received is None else received[1]

    def close(self) -> None:
        for monitor, (socket, _) in self._disconnects.items():
            socket.disable_monitor()
            monitor.close(linger=0)
        for socket in self._sockets:
            socket.close()
        self._disconnects.clear()
        self._to_reconnect.clear()
        self._sockets.clear()
