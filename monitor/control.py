"""The control channel: dashboards acknowledge or silence a monitor's alarms.

ZeroMQ REQ/REP with the guide's "Lazy Pirate" client (chapter 4): acknowledgements are rare, each
needs a definite answer (done and logged, or refused with a reason), and a dashboard must never
hang on a monitor that died: the client waits a bounded time, drops its socket (a REQ socket
that lost its reply is stuck) and retries once. The monitor's REP socket serves any number of
dashboards, one short request at a time; DEALER/ROUTER would buy concurrency nobody needs here.
Loopback by default, like the event bus.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Literal

import msgspec
import zmq

from monitor.bus import SCHEMA_VERSION, BusError, bind
from monitor.messages import Alarm

_LOGGER = logging.getLogger(__name__)


Op = Literal["acknowledge", "silence"]


@dataclass(frozen=True)
class ControlRequest:
    op: Op
    by: str  # staff initials
    alarm: int | None = None  # None: every unacknowledged alarm of that monitor
    v: int = SCHEMA_VERSION


@dataclass(frozen=True)
class ControlReply:
    ok: bool
    error: str = ""
    alarms: tuple[Alarm, ...] = ()  # the monitor's uncleared alarms after the request


Handler = Callable[[ControlRequest], ControlReply]


class ControlServer:
    """The monitor's side. Owned by one thread, which calls `serve_once` in a loop."""

    def __init__(self, endpoint: str, handler: Handler, context: zmq.Context | None = None,
                 secure: Callable[[zmq.Socket], None] | None = None):
        self._socket, self.endpoint = bind(zmq.REP, endpoint, "control endpoint", "control", 0, context, secure)
        self._handler = handler

    def serve_once(self, timeout_ms: int) -> bool:
        """Answers one request if one arrives within `timeout_ms`; True if it did."""
        if not self._socket.poll(timeout_ms):
            return False
        body = self._socket.recv()
        try:
            request = msgspec.json.decode(body, type=ControlRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            reply = ControlReply(False, f"malformed control request: {exc}")
        else:
            if request.v != SCHEMA_VERSION:
                reply = ControlReply(False, f"control request of schema {request.v}, this monitor speaks {SCHEMA_VERSION}")
            else:
                reply = self._handler(request)
        if not reply.ok:
            _LOGGER.warning("control request refused: %s", reply.error)
        self._socket.send(msgspec.json.encode(reply))
        return True

    def close(self) -> None:
        self._socket.close()


def send_request(endpoint: str, request: ControlRequest, timeout_s: float = 1.5, retries: int = 2,
                 context: zmq.Context | None = None, secure: Callable[[zmq.Socket], None] | None = None) -> ControlReply:
    """Lazy Pirate: one REQ socket per try, closed after a timeout; BusError when no try is answered."""
    context = context or zmq.Context.instance()
    body = msgspec.json.encode(request)
    for _attempt in range(retries):
        socket = context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        if secure is not None:
            secure(socket)
        try:
            socket.connect(endpoint)
            socket.send(body)
            if socket.poll(int(timeout_s * 1000)):
                try:
                    return msgspec.json.decode(socket.recv(), type=ControlReply)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise BusError(f"monitor at {endpoint} sent an unreadable reply ({exc})") from exc
        except zmq.ZMQError as exc:
            raise BusError(f"cannot reach the monitor's control endpoint {endpoint} ({exc})") from exc
        finally:
            socket.close()
    raise BusError(f"monitor at {endpoint} did not answer within {timeout_s * retries:.0f} s: "
                   "is it running? (its alarms stay unacknowledged)")
