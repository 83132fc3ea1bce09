"""A bus that leaves the PC: refused without CURVE keys; with them, only dashboards holding a key
read events or acknowledge (real sockets, a real running service)."""
import threading
import time

import pytest
import zmq.auth

from monitor.bus import BusError, Subscriber
from monitor.bus.control import ControlRequest, send_request
from monitor.bus.keys import DashboardKeys, KeysError, connect_securely, load_dashboard_keys, make_keys
from monitor.config import ConfigError, settings_from_dict
from monitor.messages import Heartbeat
from monitor.service import Service
from tests.conftest import free_endpoint, run_crywatch


@pytest.mark.parametrize("key, endpoint", [("endpoint", "tcp://0.0.0.0:5557"), ("endpoint", "tcp://*:5557"),
                                           ("control", "tcp://192.168.1.20:*"), ("endpoint", "tcp://nicu-pc:5557")])
def test_binding_beyond_loopback_without_keys_is_refused(key, endpoint):
    with pytest.raises(ConfigError, match=rf"bus.{key}: .* listens beyond this PC.*crywatch keys"):
        settings_from_dict({"bus": {key: endpoint}})
    assert settings_from_dict({"bus": {key: endpoint, "keys": "/etc/crywatch/keys"}}).bus.keys
    for local in ("tcp://127.0.0.1:5557", "tcp://localhost:5557", "tcp://[::1]:5557", "ipc:///run/crywatch.bus"):
        if key == "control" and local.startswith("tcp://"):  # loopback is not enough to acknowledge (test_control.py)
            with pytest.raises(ConfigError, match="lets any process on this PC acknowledge every alarm"):
                settings_from_dict({"bus": {key: local}})
        else:
            settings_from_dict({"bus": {key: local}})


def test_crywatch_keys_makes_a_units_keys_once(tmp_path):
    result = run_crywatch("keys", str(tmp_path / "keys"))
    assert result.returncode == 0, result.stderr
    names = sorted(p.relative_to(tmp_path / "keys").as_posix() for p in (tmp_path / "keys").rglob("*.key*"))
    assert names == ["authorized/dashboard.key", "dashboard.key", "dashboard.key_secret", "monitor.key",
                     "monitor.key_secret"]
    assert (tmp_path / "keys" / "monitor.key_secret").stat().st_mode & 0o077 == 0
    again = run_crywatch("keys", str(tmp_path / "keys"))
    assert again.returncode == 2 and "already holds keys" in again.stderr
    with pytest.raises(KeysError, match="no key at .*dashboard.key_secret"):
        load_dashboard_keys(tmp_path)


def _heard(subscriber: Subscriber, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = subscriber.receive(100)
        if got is not None and isinstance(got.event, Heartbeat):
            return True
    return False


def test_with_keys_only_a_dashboard_holding_one_listens_or_acknowledges(settings, models, tmp_path):
    make_keys(tmp_path / "keys")
    port = free_endpoint().rsplit(":", 1)[1]
    service = Service(settings.with_overrides(
        audio={"input": "scenario:quiet", "speed": 1.0}, store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
        bus={"endpoint": f"tcp://*:{port}", "control": "tcp://*:*", "keys": str(tmp_path / "keys")}), models=models)
    runner = threading.Thread(target=service.run)
    runner.start()
    keys = load_dashboard_keys(tmp_path / "keys")
    _public, intruder = zmq.auth.create_certificates(str(tmp_path), "intruder")
    public, secret = zmq.auth.load_certificate(intruder)
    stranger = DashboardKeys(public, secret, keys.monitor)  # a valid key pair, not in authorized/
    endpoint = f"tcp://127.0.0.1:{port}"
    dashboard = Subscriber([endpoint], secure=lambda s: connect_securely(s, keys))
    keyless = Subscriber([endpoint])
    unauthorized = Subscriber([endpoint], secure=lambda s: connect_securely(s, stranger))
    try:
        assert _heard(dashboard, 10)
        assert not _heard(keyless, 3) and not _heard(unauthorized, 1)
        control = service.control_endpoint.replace("0.0.0.0", "127.0.0.1")
        reply = send_request(control, ControlRequest("acknowledge", "AB"), secure=lambda s: connect_securely(s, keys))
        assert reply.ok
        with pytest.raises(BusError, match="did not answer"):
            send_request(control, ControlRequest("acknowledge", "XX"), timeout_s=0.5)
    finally:
        for subscriber in (dashboard, keyless, unauthorized):
            subscriber.close()
        service.request_stop()
        runner.join(timeout=30)
