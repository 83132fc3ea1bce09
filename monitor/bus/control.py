"""The control channel: dashboards acknowledge or silence a monitor's alarms.

ZeroMQ REQ/REP with the guide's "Lazy Pirate" client (chapter 4): acknowledgements are rare, each
needs a definite answer (done and logged, or refused with a reason), and a dashboard must never
hang on a monitor that died: the client waits a bounded time, drops its socket (a REQ socket
that lost its reply is stuck) and retries once. The monitor's REP socket serves any number of
dashboards, one short request at a time; DEALER/ROUTER would buy concurrency nobody needs here.

Who may acknowledge is the unit's rule, not the PC's: by default (`ipc://*`) the channel is a Unix
socket of the monitor's own in its runtime directory, which only the service's user and group can
open (socket 0660, a folder others cannot enter); a TCP control channel needs CURVE keys (config.py
refuses one without), so only dashboards holding the unit's key get in.
"""
from __future__ import annotations

import logging
import os
import stat
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Literal
from urllib.parse import urlsplit

import msgspec
import zmq

from monitor.bus.pubsub import SCHEMA_VERSION, BusError, ThrottledWarning, allow_ipv6, bind
from monitor.messages import Alarm

_LOGGER = logging.getLogger("monitor.control")  # the journal's name for these lines, as before the package
OWN_SOCKET = "ipc://*"  # the default: a control socket of this monitor's own in control_directory()
SOCKET_MODE = 0o660  # the service's user and group may connect (connecting needs write access), nobody else
# A request is a few hundred bytes. ZeroMQ drops a bigger one unread (ZMQ_MAXMSGSIZE) and the sender's REQ gets no
# answer: a 50 MB request once came back as a 50 MB log line and a 50 MB reply.
MAX_REQUEST_BYTES = 16 * 1024
SHOWN_CHARS = 300  # of a refusal, quoted back to the dashboard and logged
_WILDCARD_HOSTS = ("*", "0.0.0.0", "::", "[::]")


Op = Literal["acknowledge", "silence"]


@dataclass(frozen=True)
class ControlRequest:
    op: Op
    by: str  # staff initials
    alarm: int | None = None  # None: every unacknowledged alarm of that monitor
    v: int = SCHEMA_VERSION
    # An alarm an earlier run of this monitor left when it stopped, acknowledged on a dashboard since (by `by`, at
    # its acknowledged_time): the running monitor stores that in its log.
    earlier: Alarm | None = None


@dataclass(frozen=True)
class ControlReply:
    ok: bool
    error: str = ""
    alarms: tuple[Alarm, ...] = ()  # the monitor's uncleared alarms after the request


Handler = Callable[[ControlRequest], ControlReply]


def control_directory() -> Path:
    """Where a monitor's own control socket goes: systemd's RuntimeDirectory (the unit makes
    /run/crywatch, 0750, the service's user and group), else the user's runtime folder. It must be
    this user's and closed to others: a socket in a folder anyone could swap would invite forgery."""
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        folder = Path(runtime)
    else:
        base = os.environ.get("XDG_RUNTIME_DIR")
        folder = Path(base) / "crywatch" if base else Path(tempfile.gettempdir()) / f"crywatch-{os.getuid()}"
        try:
            folder.mkdir(mode=0o750, exist_ok=True)
        except OSError as exc:
            raise BusError(f"cannot make the control socket's folder {folder} ({exc}): set [bus] control") from exc
    _check_closed(folder)
    return folder


def _check_closed(folder: Path) -> None:
    """A control socket's folder must be this user's and closed to others: in one anyone could enter or write,
    another user could reach the socket, or replace it and forge the monitor's answers."""
    try:
        info = folder.lstat()
    except OSError as exc:
        raise BusError(f"the control socket's folder {folder} cannot be used ({exc.strerror or exc}): create it, "
                       "closed to others, or set [bus] control") from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o007:
        raise BusError(f"{folder} is not a folder of this user's closed to others (mode {stat.S_IMODE(info.st_mode):o}): "
                       "any user could reach or replace the control socket there; chmod o-rwx it (the unit sets "
                       "RuntimeDirectoryMode=0750) or set [bus] control")


def _remove_dead_sockets(folder: Path) -> None:
    """Sockets that monitors killed outright (kill -9, power cut) left behind; systemd empties
    /run/crywatch itself whenever the service stops, a user's runtime folder is not emptied."""
    for path in folder.glob("control-*-*.sock"):
        try:
            os.kill(int(path.name.split("-")[1]), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            pass  # not ours to judge: a name we did not make, or another user's live process


class ControlServer:
    """The monitor's side. Owned by one thread, which calls `serve_once` in a loop. Refused requests
    are counted (`refused`) and logged at most once a second: a flood is a counter, not a full disk."""

    def __init__(self, endpoint: str, handler: Handler, context: zmq.Context | None = None,
                 secure: Callable[[zmq.Socket], None] | None = None):
        if endpoint == OWN_SOCKET:
            folder = control_directory()
            _remove_dead_sockets(folder)
            endpoint = f"ipc://{folder / f'control-{os.getpid()}-{uuid.uuid4().hex[:8]}.sock'}"
        elif endpoint.startswith("ipc://"):  # a socket named in [bus] control: its folder is held to the same rule
            _check_closed(Path(endpoint.removeprefix("ipc://")).parent)

        def limited(socket: zmq.Socket) -> None:
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
            if secure is not None:
                secure(socket)

        self._socket, self.endpoint = bind(zmq.REP, endpoint, "control endpoint", "control", 0, context, limited)
        if self.endpoint.startswith("ipc://"):
            try:  # made under the process's umask: opened to the group (0077 under systemd), closed to others
                os.chmod(self.endpoint.removeprefix("ipc://"), SOCKET_MODE)
            except OSError as exc:
                self._socket.close()
                raise BusError(f"cannot restrict the control socket {self.endpoint} ({exc})") from exc
        self._handler = handler
        self._refusals = ThrottledWarning(_LOGGER)

    @property
    def refused(self) -> int:
        return self._refusals.count

    def serve_once(self, timeout_ms: int) -> bool:
        """Answers one request if one arrives within `timeout_ms`; True if it did."""
        if not self._socket.poll(timeout_ms):
            self._refusals.flush()  # the tail of a flood, once its second is up
            return False
        body = self._socket.recv()
        try:
            request = msgspec.json.decode(body, type=ControlRequest)
        except (msgspec.MsgspecError, RecursionError) as exc:
            reply = ControlReply(False, f"malformed control request: {exc}")
        else:
            if request.v != SCHEMA_VERSION:
                reply = ControlReply(False, f"control request of schema {request.v}, this monitor speaks {SCHEMA_VERSION}")
            else:
                reply = self._handler(request)
        if not reply.ok:
            reply = replace(reply, error=bounded(reply.error))
            self._refusals.add(f"control request refused: {reply.error}")
        self._socket.send(msgspec.json.encode(reply))
        return True

    def close(self) -> None:
        self._socket.close()
        if self.endpoint.startswith("ipc://"):  # now, not whenever ZeroMQ's I/O thread gets to it
            Path(self.endpoint.removeprefix("ipc://")).unlink(missing_ok=True)


def bounded(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text`, or its first `limit` characters and how long it was: what a refused request quotes stays small."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def reachable(control: str, bus_endpoint: str) -> str:
    """The control endpoint a heartbeat advertised, as a dashboard can connect to it: a monitor bound
    to every interface (tcp://0.0.0.0:5558) is reached at the host its bus was reached at."""
    parts = urlsplit(control)
    if parts.scheme != "tcp" or parts.netloc.rsplit(":", 1)[0] not in _WILDCARD_HOSTS:
        return control
    bus = urlsplit(bus_endpoint)
    if bus.scheme != "tcp" or bus.port is None:
        return control
    return f"tcp://{bus.netloc.rsplit(':', 1)[0]}:{parts.port}"


def send_request(endpoint: str, request: ControlRequest, timeout_s: float = 1.5, retries: int = 2,
                 context: zmq.Context | None = None, secure: Callable[[zmq.Socket], None] | None = None) -> ControlReply:
    """Lazy Pirate: one REQ socket per try, closed after a timeout; BusError when no try is answered."""
    if endpoint.startswith("ipc://"):
        path = endpoint.removeprefix("ipc://")
        if not os.path.exists(path) or not os.access(path, os.W_OK):
            raise BusError(f"cannot open the monitor's control socket {path}: acknowledging needs a dashboard on the "
                           "monitor's PC run by a member of the service's group, or CURVE keys and a tcp [bus] control "
                           "(docs/operations.md)")
    context = context or zmq.Context.instance()
    body = msgspec.json.encode(request)
    for _attempt in range(retries):
        socket = context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        allow_ipv6(socket, endpoint)
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
