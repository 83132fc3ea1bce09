"""SIGHUP (systemctl reload) re-reads the config: thresholds, alarm settings and paging change without a
gap in monitoring; keys that need a restart are named; a bad file changes nothing. A real `crywatch run`."""
import json
import re
import signal
import subprocess
import threading
import time

import numpy as np

from monitor.classify import Classifier
from monitor.config import AlertSettings
from monitor.messages import AlertEnded, AlertStarted, Embedding, Window
from tests.conftest import PROJECT_ROOT, crywatch_command, free_endpoint


class _Lines:
    """A process's output, read in a thread, waited on line by line."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._new = threading.Condition()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for line in stream:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()

    def wait_for(self, pattern: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                found = next((line for line in self.lines if re.search(pattern, line)), None)
                if found is not None:
                    return found
                assert time.monotonic() < deadline, f"no line matching {pattern!r} in:\n{''.join(self.lines)}"
                self._new.wait(0.2)


def test_sighup_applies_alarm_settings_and_paging_names_restart_keys_and_keeps_monitoring(tmp_path):
    config, paged = tmp_path / "config.toml", tmp_path / "paged.jsonl"
    pager = tmp_path / "page.sh"
    pager.write_text(f"#!/bin/sh\ncat >> {paged}\necho >> {paged}\n")
    pager.chmod(0o755)
    config.write_text("[audio]\nblock_ms = 50\n")
    process = subprocess.Popen(
        crywatch_command("--config", str(config), "--log-level", "info", "run", "--headless", "--input",
                         "scenario:nicu", "--speed", "6", "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus",
                         free_endpoint()),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = _Lines(process.stdout)
    try:
        output.wait_for(r"\] listening")  # at 6x, the cry (20 s in) raises its alarm some 4 s from here
        config.write_text("[alerts]\nraise_windows = 0\n")
        process.send_signal(signal.SIGHUP)
        refused = output.wait_for(r"\] reload_refused")
        assert "alerts.raise_windows: 0 is outside the allowed range [1, 30]" in refused
        config.write_text(f'[alerts]\npriorities = {{ pain = "low" }}\ncommand = "{pager}"\n[audio]\nblock_ms = 100\n')
        process.send_signal(signal.SIGHUP)
        reloaded = output.wait_for(r"\] reloaded")
        assert "applied=['alerts.priorities', 'alerts.command']" in reloaded and "needs_restart=['audio.block_ms']" in reloaded
        assert "audio.block_ms changed but take effect only after a restart" in output.wait_for("only after a restart")
        assert process.poll() is None  # still monitoring (SIGHUP used to end it: exit 129)
        output.wait_for(r"ALARM \d+ \[low\] PAIN CRY")  # pain is high by default: the reloaded priority is in effect
        deadline = time.monotonic() + 30
        while not paged.exists() or '"type":"alarm_raised"' not in paged.read_text():
            assert time.monotonic() < deadline, "the reloaded pager command never ran"
            time.sleep(0.1)
        assert json.loads(paged.read_text().splitlines()[0])["data"]["alarm"]["priority"] == "low"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, "".join(output.lines)
    finally:
        process.kill()
    assert "stopped (" in output.wait_for(r"\] stopped \(")


class _Head:
    """A head whose probabilities are the embedding itself (classes not_cry, pain, hunger)."""

    name, classes, thresholds, alert_thresholds = "identity", ("not_cry", "pain", "hunger"), {}, {}


def _step(classifier: Classifier, probabilities, start: int):
    window = Window(start, 1.0, -20.0, np.zeros(32_000, np.float32))
    return classifier.step(Embedding(window, np.asarray(probabilities), "test"), np.asarray(probabilities))[1]


def test_a_reloaded_threshold_applies_from_the_next_window_and_a_dropped_class_ends_its_alert():
    classifier = Classifier(_Head(), 0.0, AlertSettings(classes=("pain", "hunger"), raise_windows=1,
                                                        thresholds={"pain": 0.9, "hunger": 0.5}))
    [hunger] = _step(classifier, [0.2, 0.6, 0.6], 0)  # pain 0.6 is under its 0.9
    assert isinstance(hunger, AlertStarted) and hunger.label == "hunger"
    classifier.reconfigure(AlertSettings(classes=("pain",), raise_windows=1, thresholds={"pain": 0.5}))
    ended, pain = _step(classifier, [0.2, 0.6, 0.6], 16_000)
    assert isinstance(ended, AlertEnded) and ended.label == "hunger" and "config reloaded" in ended.reason
    assert isinstance(pain, AlertStarted) and pain.label == "pain" and pain.threshold == 0.5
