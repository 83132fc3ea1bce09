"""CURVE keys for a bus that leaves the PC: encrypted events, and only dashboards holding a key
may listen or acknowledge (ZeroMQ's CurveZMQ, with ZAP checking the dashboards' public keys).

`crywatch keys DIR` writes one set for a unit:
  DIR/monitor.key, DIR/monitor.key_secret      the monitors' pair (the secret stays on bedside PCs)
  DIR/dashboard.key, DIR/dashboard.key_secret  the dashboards' pair (the secret stays on dashboard PCs)
  DIR/authorized/dashboard.key                 public keys a monitor lets in (add one per dashboard PC)
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from monitor.bus.pubsub import BusError


class KeysError(BusError):
    """Keys missing or unreadable; the message names the file and the fix."""


@dataclass(frozen=True)
class MonitorKeys:
    public: bytes
    secret: bytes
    authorized: Path  # folder of dashboards' public keys


@dataclass(frozen=True)
class DashboardKeys:
    public: bytes
    secret: bytes
    monitor: bytes  # the monitors' public key


def make_keys(folder: Path) -> None:
    folder = Path(folder)
    if (folder / "monitor.key_secret").exists():
        raise KeysError(f"{folder} already holds keys: choose an empty folder (replacing keys locks dashboards out)")
    (folder / "authorized").mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for name in ("monitor", "dashboard"):
        _public, secret = zmq.auth.create_certificates(str(folder), name)
        os.chmod(secret, 0o600)
    shutil.copy(folder / "dashboard.key", folder / "authorized" / "dashboard.key")


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise KeysError(f"no key at {path}: make a unit's keys with `crywatch keys DIR` and set [bus] keys = DIR")
    try:
        public, secret_key = zmq.auth.load_certificate(str(path))
    except (ValueError, OSError) as exc:
        raise KeysError(f"key {path} is unreadable ({exc}): make new keys with `crywatch keys DIR`") from exc
    if secret and secret_key is None:
        raise KeysError(f"key {path} holds no secret key: use the .key_secret file")
    return public, secret_key


def load_monitor_keys(folder: str | Path) -> MonitorKeys:
    folder = Path(folder)
    public, secret = _load(folder / "monitor.key_secret", secret=True)
    assert secret is not None
    authorized = folder / "authorized"
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise KeysError(f"{authorized} holds no dashboard keys: copy each dashboard's .key there")
    return MonitorKeys(public, secret, authorized)


def load_dashboard_keys(folder: str | Path) -> DashboardKeys:
    folder = Path(folder)
    public, secret = _load(folder / "dashboard.key_secret", secret=True)
    monitor, _ = _load(folder / "monitor.key", secret=False)
    assert secret is not None
    return DashboardKeys(public, secret, monitor)


def serve_securely(socket: zmq.Socket, keys: MonitorKeys) -> None:
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True


def connect_securely(socket: zmq.Socket, keys: DashboardKeys) -> None:
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_serverkey = keys.monitor


def start_authenticator(keys: MonitorKeys, context: zmq.Context | None = None) -> ThreadAuthenticator:
    """ZAP: CURVE clients are let in only if their public key is in `authorized` (one per process)."""
    authenticator = ThreadAuthenticator(context or zmq.Context.instance())
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(keys.authorized))
    return authenticator
