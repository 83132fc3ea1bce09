"""`[alerts] command`: a site's own program (pager, nurse call gateway) run on alarm raise,
acknowledge and clear, with the event's bus message as JSON on stdin.

It runs in its own thread with a timeout, so a slow or broken program never delays the
pipeline; its failures are logged (journald) and counted, never raised.
"""
from __future__ import annotations

import logging
import shlex
import subprocess

from monitor.bus.pubsub import Envelope, encode
from monitor.messages import AlarmAcknowledged, AlarmCleared, AlarmRaised
from monitor.workers import QueueDrain

_LOGGER = logging.getLogger("monitor.notify")  # the journal's name for these lines, as before the package
_BACKLOG = 100  # events waiting for a slow program; beyond this the oldest are dropped (and counted)


class CommandNotifier:
    def __init__(self, command: str, timeout_s: float):
        self._argv = shlex.split(command)
        self._timeout = timeout_s
        self._events: QueueDrain[Envelope] = QueueDrain("alarm-command", _BACKLOG, self._run)
        self.failures = 0
        self.runs = 0

    @property
    def dropped(self) -> int:
        return self._events.dropped

    def start(self) -> None:
        self._events.start()

    def offer(self, envelope: Envelope) -> None:
        """Called on every event; only raise, acknowledge and clear run the program. Never blocks."""
        if isinstance(envelope.event, (AlarmRaised, AlarmAcknowledged, AlarmCleared)):
            self._events.put(envelope)

    def stop(self, timeout_s: float) -> None:
        """Runs what is queued (each within its timeout), waiting at most `timeout_s` in all."""
        self._events.finish(timeout_s)

    def _run(self, envelope: Envelope) -> None:
        _topic, body = encode(envelope)
        self.runs += 1
        try:
            done = subprocess.run(self._argv, input=body, capture_output=True, timeout=self._timeout, check=False)
        except subprocess.TimeoutExpired:
            self.failures += 1
            _LOGGER.error("alarm command %s timed out after %.0f s", self._argv[0], self._timeout)
        except OSError as exc:
            self.failures += 1
            _LOGGER.error("alarm command %s could not run: %s", self._argv[0], exc)
        else:
            if done.returncode != 0:
                self.failures += 1
                _LOGGER.error("alarm command %s exited %d: %s", self._argv[0], done.returncode,
                              done.stderr.decode(errors="replace").strip()[-500:])
