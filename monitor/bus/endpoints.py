"""A monitor's own end of the bus: the publisher its events leave by and the control server dashboards
acknowledge through, both behind CURVE keys where `[bus] keys` is set."""
from __future__ import annotations

from typing import Callable

from monitor.bus.control import ControlReply, ControlRequest, ControlServer
from monitor.bus.keys import load_monitor_keys, serve_securely, start_authenticator
from monitor.bus.pubsub import BusError, Publisher
from monitor.config import BusSettings


class MonitorEndpoints:
    """Opened together and closed together: a control socket that cannot bind closes what opened before it."""

    def __init__(self, settings: BusSettings, on_control: Callable[[ControlRequest], ControlReply]):
        # Beyond loopback (config refuses it without keys), only dashboards holding a key get in.
        keys = load_monitor_keys(settings.keys) if settings.keys else None
        secure = (lambda socket: serve_securely(socket, keys)) if keys else None
        self._authenticator = start_authenticator(keys) if keys else None
        self.publisher = Publisher(settings.endpoint, secure=secure)
        try:
            self.control = ControlServer(settings.control, on_control, secure=secure)
        except BusError:
            self.publisher.close()
            if self._authenticator is not None:
                self._authenticator.stop()
            raise

    def close(self) -> None:
        self.control.close()
        self.publisher.close()
        if self._authenticator is not None:
            self._authenticator.stop()
