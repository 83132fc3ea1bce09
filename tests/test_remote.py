"""HeAR served to the monitors: the real serving engine (Ray Serve, `crywatch serve-embedder`) on
stand-in weights, and what a monitor does when its server dies, stalls or answers nonsense."""
from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import soundfile as sf

from monitor.analyze import analyze_samples
from monitor.classify import Head, HeadError
from monitor.config import PROJECT_ROOT, ConfigError, HearSettings, load_settings
from monitor.embed import EmbedderError, offline_embedder
from monitor.embed.failover import Failover
from monitor.embed.hear import load_hear
from monitor.embed.remote import EMBED_PATH, ID_HEADER, INFO_PATH, RemoteEmbedder
from monitor.messages import (
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    AlarmRaised,
    Heartbeat,
    WindowScored,
)
from monitor.pipeline import Models
from monitor.service import Service
from tests.conftest import cry_path, crywatch_command, free_endpoint, pick, run_crywatch
from tests.hear_standins import CRIES, REVISION, SMALL_VIT, cry_clips, hf_vit, write_config, write_torch_weights

pytest.importorskip("ray.serve", reason="the serving engine is an extra: pip install 'crywatch[serve]'")
STANDIN_ID = f"hear-torch@{REVISION[:12]}"
OFFLINE = {"HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample_clips(count: int) -> np.ndarray:
    """Real cries where the data is present; elsewhere chirps in noise, so the check still runs."""
    if (CRIES / "index.csv").is_file():
        return cry_clips(count)
    rng = np.random.default_rng(3)
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE
    return np.stack([0.3 * np.sin(2 * np.pi * (400 + 100 * i) * t * (1 + t)) + 0.05 * rng.standard_normal(WINDOW_SAMPLES)
                     for i in range(count)]).astype(np.float32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_torch_weights(tmp_path_factory.mktemp("hear-pytorch"), hf_vit(SMALL_VIT, seed=2), "4.x")


def hear_settings(weights: Path, **values: Any) -> dict[str, Any]:
    return {"backend": "torch", "model_dir": str(weights), "revision": REVISION, **values}


@pytest.fixture(scope="module")
def local(weights: Path) -> Any:
    return load_hear(HearSettings(**hear_settings(weights)))


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A head for the stand-in's vectors, with the shipped head's classes (what the fallback types with)."""
    shipped = load_settings()
    classes = Head.load(shipped.classifier.head_path()).classes
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("head")
    Head("hear-standin", STANDIN_ID, 512, classes, {}, 1.0, np.zeros(512, np.float32), np.ones(512, np.float32),
         ((rng.normal(0, 0.05, (512, len(classes))).astype(np.float32), np.zeros(len(classes), np.float32)),)
         ).save(folder)
    return folder


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as a unit's own CA would issue (PEM)."""
    pytest.importorskip("cryptography", reason="cryptography (a dependency of ray[serve]) makes the test certificate")
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crywatch-test-embedder")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class EmbeddingServer:
    """A real `crywatch serve-embedder` (Ray Serve) in its own session, so a kill takes all of Ray with it."""

    def __init__(self, folder: Path, weights: Path, **serve: Any):
        self.port = free_port()
        self.url = f"{'https' if serve.get('tls_cert') else 'http'}://127.0.0.1:{self.port}"
        self.ca_file = str(serve.get("tls_cert", ""))
        self.config = write_config(folder / "server.toml", hear=hear_settings(weights),
                                   serve={"port": self.port, "max_batch": 32, **serve})
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, timeout: float = 240) -> "EmbeddingServer":
        self.process = subprocess.Popen(crywatch_command("--config", str(self.config), "serve-embedder"),
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT_ROOT,
                                        start_new_session=True, env={**os.environ, **OFFLINE, "PYTHONUNBUFFERED": "1"})
        ready = threading.Event()

        def read(stream: Any) -> None:
            for line in stream:
                self.output.append(line)
                if "crywatch: serving" in line:
                    ready.set()

        threading.Thread(target=read, args=(self.process.stdout,), daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            pytest.fail("serve-embedder did not come up:\n" + "".join(self.output[-30:]))
        return self

    def kill(self) -> None:
        """SIGKILL to every process of the server's session: the driver, Ray's daemons, the replica."""
        assert self.process is not None
        session = self.process.pid
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session:  # field 6 of stat: the session id
                try:
                    os.kill(int(stat.parent.name), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.process.wait(30)

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, weights: Path) -> Iterator[EmbeddingServer]:
    """As a unit would run it: TLS, with a certificate the monitors check against their CA file."""
    folder = tmp_path_factory.mktemp("server")
    cert, key = self_signed(folder)
    running = EmbeddingServer(folder, weights, tls_cert=str(cert), tls_key=str(key)).start()
    yield running
    assert running.stop() == 0, "".join(running.output[-20:])


# -- the serving engine -------------------------------------------------------------------------------


@pytest.mark.slow
def test_served_vectors_are_the_local_backend_s(server: EmbeddingServer, local: Any) -> None:
    remote = RemoteEmbedder(server.url, timeout_s=30, ca_file=server.ca_file)
    assert (remote.id, remote.dim) == (local.id, local.dim) == (STANDIN_ID, 512)  # the commit travels in the id
    clips = sample_clips(6)
    served, own = remote.embed(clips), local.embed(clips)
    cosine = np.sum(served * own, axis=1) / np.linalg.norm(served, axis=1) / np.linalg.norm(own, axis=1)
    assert cosine.min() >= 0.99999, cosine
    assert remote.embed(np.zeros((0, WINDOW_SAMPLES), np.float32)).shape == (0, 512)


@pytest.mark.slow
def test_concurrent_requests_share_forward_passes(server: EmbeddingServer) -> None:
    remote = RemoteEmbedder(server.url, timeout_s=30, ca_file=server.ca_file)
    before = remote.info()["served"]
    clips = sample_clips(4)
    with ThreadPoolExecutor(24) as pool:
        vectors = list(pool.map(lambda i: remote.embed(clips[i % 4:i % 4 + 1]), range(96)))
    after = remote.info()["served"]
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == 96 and after["clips"] - before["clips"] == 96
    assert batches < requests and after["largest_batch"] > 1, after  # dynamic batching gathered them
    for i, vector in enumerate(vectors):  # and every caller got its own clip's vector back
        np.testing.assert_allclose(vector, vectors[i % 4], atol=1e-5)


@pytest.mark.slow
def test_malformed_requests_get_a_reason_and_an_unknown_certificate_is_refused(server: EmbeddingServer) -> None:
    def post(body: bytes, path: str = EMBED_PATH) -> tuple[int, str]:
        request = urllib.request.Request(server.url + path, data=body, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30, context=trusting) as response:
                return response.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    trusting = ssl.create_default_context(cafile=server.ca_file)
    status, text = post(np.zeros(16_000, "<f4").tobytes())
    assert status == 400 and "32000 float32" in text
    status, text = post(np.full(WINDOW_SAMPLES, np.nan, "<f4").tobytes())
    assert status == 400 and "NaN" in text
    status, text = post(b"", path="/v2/other")
    assert status == 404 and INFO_PATH in text
    with pytest.raises(EmbedderError, match=r"answered 413.*at most 32"):
        RemoteEmbedder(server.url, timeout_s=30, ca_file=server.ca_file).embed(np.zeros((33, WINDOW_SAMPLES), np.float32))
    with pytest.raises(EmbedderError, match="CERTIFICATE_VERIFY_FAILED"):  # a server the unit's CA did not sign
        RemoteEmbedder(server.url, timeout_s=30)


@pytest.mark.slow
def test_a_monitor_types_cries_with_the_served_model(server: EmbeddingServer, head: Path, tmp_path: Path,
                                                     cries_index: list[dict[str, str]]) -> None:
    config = write_config(tmp_path / "monitor.toml", classifier={"embedder": "hear", "head": str(head)},
                          hear={"backend": "remote", "url": server.url, "timeout_s": 30.0, "ca_file": server.ca_file},
                          store={"log_embeddings": True})
    settings = load_settings(config)
    models = Models.load(settings)
    assert models.failover is not None and models.failover.fault is None
    [row] = pick(cries_index, 1, source="corvin", label="pain")
    audio, rate = sf.read(cry_path(row), dtype="float32")
    assert rate == SAMPLE_RATE
    events, summary = analyze_samples(audio, settings, models)
    assert summary["gated_windows"] >= 2 and summary["episodes"]
    used = {e.embedder_id for e in events if type(e).__name__ == "WindowEmbedded"}
    assert used == {STANDIN_ID} and models.failover.switches == 0


def test_serve_embedder_without_weights_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "server.toml", hear={"backend": "torch", "model_dir": str(tmp_path / "none")},
                          serve={"port": free_port()})
    result = run_crywatch("--config", str(config), "serve-embedder", env=OFFLINE)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("crywatch: error: [hear] model_dir")


def test_settings_that_would_leak_audio_or_leave_cries_untyped_are_refused(tmp_path: Path) -> None:
    def refused(match: str, **sections: dict[str, Any]) -> None:
        with pytest.raises(ConfigError, match=match):
            load_settings(write_config(tmp_path / "c.toml", **sections))

    refused("unencrypted", hear={"backend": "remote", "url": "http://10.1.2.3:8500"})
    refused("needs the server's address", hear={"backend": "remote"})
    refused("fallback head", hear={"backend": "remote", "url": "http://127.0.0.1:8500", "fallback_head": ""})
    refused("tls_cert and tls_key", serve={"host": "0.0.0.0"})
    load_settings(write_config(tmp_path / "ok.toml", hear={"backend": "remote", "url": "https://10.1.2.3:8500"}))


def test_heads_that_do_not_fit_a_served_model_are_refused(head: Path, local: Any, tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path / "c.toml", classifier={"embedder": "hear"},
                                          hear={"backend": "remote", "url": f"http://127.0.0.1:{free_port()}"}))
    models = Models.load(settings.with_overrides(classifier={"head": str(head)}))  # server down: starts on the fallback
    assert models.failover is not None and "unreachable" in (models.failover.fault or "")
    other = StandinServer(local)
    other.mode = "other_model"
    try:
        with pytest.raises(HeadError, match="serves hear-torch@ffffffffffff, but the head was trained on"):
            Models.load(settings.with_overrides(classifier={"head": str(head)}, hear={"url": other.url}))
    finally:
        other.close()
    with pytest.raises(HeadError, match="not on HeAR"):
        Models.load(settings)  # the shipped head was trained on acoustic-v2
    with pytest.raises(HeadError, match="fallback runs on this PC"):
        Models.load(settings.with_overrides(classifier={"head": str(head)}, hear={"fallback_head": str(head)}))


# -- faults, against a stand-in server that can misbehave on demand ----------------------------------------


class StandinServer:
    """The serving protocol over a real socket, with the real stand-in model, misbehaving on demand."""

    def __init__(self, embedder: Any):
        self.mode = "ok"  # ok | slow | wrong_shape | other_model | error
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if owner.mode == "slow":
                    time.sleep(3)
                served_id = "hear-torch@ffffffffffff" if owner.mode == "other_model" else embedder.id
                self.answer(200, json.dumps({"id": served_id, "dim": 512, "window_samples": WINDOW_SAMPLES}).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                windows = np.frombuffer(body, "<f4").reshape(-1, WINDOW_SAMPLES).copy()
                vectors = embedder.embed(windows)
                match owner.mode:
                    case "slow":
                        time.sleep(3)
                    case "wrong_shape":
                        vectors = vectors[:, :256]
                    case "error":
                        self.answer(500, b"CUDA error: out of memory\n")
                        return
                served_id = "hear-torch@ffffffffffff" if owner.mode == "other_model" else embedder.id
                self.answer(200, np.ascontiguousarray(vectors, "<f4").tobytes(), {ID_HEADER: served_id})

            def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting: the timeout under test

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def standin(local: Any) -> Iterator[StandinServer]:
    server = StandinServer(local)
    yield server
    server.close()


@pytest.mark.parametrize("mode, reason", [("slow", "within 1 s"), ("wrong_shape", "256 x 512|numbers for"),
                                          ("other_model", "serves hear-torch@ffffffffffff"),
                                          ("error", "500.*out of memory"), ("down", "unreachable")])
def test_each_fault_types_the_batch_with_the_fallback_then_the_server_again(standin: StandinServer, local: Any,
                                                                           mode: str, reason: str) -> None:
    clock = [0.0]
    remote = RemoteEmbedder(standin.url, timeout_s=1.0, expected_id=STANDIN_ID)
    fallback = offline_embedder("acoustic-v2")
    failover = Failover(remote, fallback, retry_s=5.0, clock=lambda: clock[0])
    clips = sample_clips(3)
    vectors, used = failover.embed(clips)
    assert used == STANDIN_ID and failover.fault is None
    np.testing.assert_allclose(vectors, local.embed(clips), atol=1e-5)

    if mode == "down":
        standin.close()
    else:
        standin.mode = mode
    started = time.monotonic()
    vectors, used = failover.embed(clips)
    assert time.monotonic() - started < 5  # one timeout at most, then the fallback
    assert used == fallback.id and vectors.shape == (3, fallback.dim)  # every window, once, by the fallback
    np.testing.assert_allclose(vectors, fallback.embed(clips), atol=1e-6)
    assert failover.fault is not None and __import__("re").search(reason, failover.fault), failover.fault
    started = time.monotonic()
    assert failover.embed(clips)[1] == fallback.id and time.monotonic() - started < 0.9  # no timeout per batch
    if mode == "down":
        return
    standin.mode = "ok"
    failover.probe()  # the service's probe thread (or, in analyze, the next batch after retry_s)
    assert failover.fault is None and failover.embed(clips)[1] == STANDIN_ID and failover.switches == 2


def test_analyze_retries_the_server_after_retry_s_without_a_probe(standin: StandinServer) -> None:
    clock = [0.0]
    failover = Failover(RemoteEmbedder(standin.url, 1.0, expected_id=STANDIN_ID), offline_embedder("acoustic-v2"),
                        retry_s=5.0, clock=lambda: clock[0])
    standin.mode = "error"
    clips = sample_clips(1)
    assert failover.embed(clips)[1] == "acoustic-v2"
    standin.mode = "ok"
    assert failover.embed(clips)[1] == "acoustic-v2"  # not yet
    clock[0] = 5.0
    assert failover.embed(clips)[1] == STANDIN_ID and failover.fault is None


def _cry_sequence(cries_index: list[dict[str, str]], tmp_path: Path, count: int) -> Path:
    """Real pain cries, 4 s of room noise between them: a stream that keeps the embedder busy."""
    rng = np.random.default_rng(1)
    parts = []
    for row in pick(cries_index, count, source="corvin", label="pain"):
        audio, rate = sf.read(cry_path(row), dtype="float32")
        assert rate == SAMPLE_RATE
        parts += [audio, 0.002 * rng.standard_normal(4 * SAMPLE_RATE).astype(np.float32)]
    path = tmp_path / "cries.wav"
    sf.write(path, np.concatenate(parts), SAMPLE_RATE)
    return path


def _start_remote_service(tmp_path: Path, head: Path, url: str,
                          source: Path) -> tuple[Service, threading.Thread, list[tuple[float, Any]]]:
    """A monitor on `source` in real time, typing through `url`; every event with when it arrived."""
    config = write_config(tmp_path / "monitor.toml", classifier={"embedder": "hear", "head": str(head)},
                          hear={"backend": "remote", "url": url, "timeout_s": 1.0},
                          alerts={"technical_min_s": 0.0}, store={"log_embeddings": True})
    settings = load_settings(config).with_overrides(
        audio={"input": str(source), "speed": 1.0}, store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-remote"})
    received: list[tuple[float, Any]] = []
    service = Service(settings, on_message=lambda envelope: received.append((time.monotonic(), envelope.event)))
    runner = threading.Thread(target=service.run)
    runner.start()
    return service, runner, received


def _window_rows(tmp_path: Path) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(tmp_path / "log.db") as db:
        if not db.execute("select 1 from sqlite_master where name = 'windows'").fetchone():
            return []  # the store thread has not created the log yet
        return db.execute("select w.start, e.embedder_id from windows w join window_embeddings e "
                          "on e.window_id = w.id order by w.id").fetchall()


def _typed_by(tmp_path: Path) -> set[str]:
    """The embedders that typed the windows in the log so far."""
    return {embedder for _, embedder in _window_rows(tmp_path)}


def _server_down_raised(received: list[tuple[float, Any]]) -> list[float]:
    return [t for t, e in list(received) if isinstance(e, AlarmRaised) and e.alarm.label == "embedding_server_down"]


def _until(condition: Any, runner: threading.Thread, seconds: float, failure: str) -> None:
    """Polls `condition` while the monitor runs; fails with `failure` if it has not held within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert runner.is_alive() and time.monotonic() < deadline, failure
        time.sleep(0.2)


@pytest.mark.slow
def test_a_stalled_server_is_a_technical_alarm_within_5_s_and_its_return_is_seen(
        standin: StandinServer, head: Path, tmp_path: Path, cries_index: list[dict[str, str]]) -> None:
    # Each step waits for what the checks below need, not for a fixed time; the monitor is stopped once the
    # server is back, so the stream holds more cries than the steps need on a loaded machine.
    service, runner, received = _start_remote_service(tmp_path, head, standin.url, _cry_sequence(cries_index, tmp_path, 8))

    def back_in_use() -> bool:  # the latest heartbeat: typing with the server again, its alarm's cause gone
        beats = [e for _, e in list(received) if isinstance(e, Heartbeat)]
        return bool(beats) and beats[-1].embedder == STANDIN_ID and any(
            a.label == "embedding_server_down" and not a.condition for a in beats[-1].alarms)

    try:
        _until(lambda: STANDIN_ID in _typed_by(tmp_path), runner, 60, "the server typed no window")
        standin.mode, stalled_at = "slow", time.monotonic()
        # The stall lasts until the alarm is up and the fallback has typed windows, as the heartbeats say too.
        _until(lambda: _server_down_raised(received) and "acoustic-v2" in _typed_by(tmp_path) and any(
            isinstance(e, Heartbeat) and e.embedder == "acoustic-v2" for _, e in list(received)), runner, 60,
            "no alarm, or no window typed by the fallback, while the server stalled")
        standin.mode = "ok"
        _until(back_in_use, runner, 60, "the server was not used again once it answered")
    finally:
        standin.mode = "ok"
        service.request_stop()
        runner.join(120)
    assert not runner.is_alive()
    raised = _server_down_raised(received)
    assert raised and raised[0] - stalled_at <= 5.0, (raised, stalled_at)
    print(f"stalled server -> technical alarm in {raised[0] - stalled_at:.2f} s")
    beats = [e for _, e in received if isinstance(e, Heartbeat)]
    assert any(b.embedder == "acoustic-v2" for b in beats) and beats[-1].embedder == STANDIN_ID
    [alarm] = [a for a in beats[-1].alarms if a.label == "embedding_server_down"]
    assert not alarm.condition  # the cause has gone; it stays (latched) until someone acknowledges it
    rows = _window_rows(tmp_path)
    scored = [e for _, e in received if isinstance(e, WindowScored) and e.gated]
    assert len(rows) == len({start for start, _ in rows}) == len(scored)  # each window once, none lost
    assert {embedder for _, embedder in rows} == {STANDIN_ID, "acoustic-v2"}


@pytest.mark.slow
def test_a_killed_server_falls_back_alarms_and_is_used_again_when_restarted(
        tmp_path: Path, weights: Path, head: Path, cries_index: list[dict[str, str]]) -> None:
    server = EmbeddingServer(tmp_path, weights).start()
    RemoteEmbedder(server.url, timeout_s=30).embed(sample_clips(1))  # warm up: a cold first request may take over 1 s
    # More cries than a restart of Ray Serve can take on a loaded machine: the monitor is stopped once
    # the restarted server is in use again and has typed windows again, not when a fixed stream ends.
    source = _cry_sequence(cries_index, tmp_path, 16)
    service, runner, received = _start_remote_service(tmp_path, head, server.url, source)
    try:
        _until(lambda: STANDIN_ID in _typed_by(tmp_path), runner, 60, "the server typed no window")
        server.kill()
        killed_at = time.monotonic()
        _until(lambda: _server_down_raised(received), runner, 60, "no alarm for the killed server")
        server.start()  # same port: the monitors' url does not change
        back_at = time.monotonic()
        deadline = back_at + 120
        while True:
            used = [embedder for _, embedder in _window_rows(tmp_path)]
            if "acoustic-v2" in used and STANDIN_ID in used[used.index("acoustic-v2"):] and any(
                    t > back_at and isinstance(e, Heartbeat) and e.embedder == STANDIN_ID for t, e in list(received)):
                break
            assert runner.is_alive() and time.monotonic() < deadline, "the restarted server was not used again"
            time.sleep(0.5)
    finally:
        service.request_stop()
        runner.join(300)
        if server.process is not None and server.process.poll() is None:
            server.stop()
    raised = _server_down_raised(received)
    assert raised and raised[0] - killed_at <= 5.0
    beats = [(t, e) for t, e in received if isinstance(e, Heartbeat)]
    returned = next(t for t, b in beats if t > back_at and b.embedder == STANDIN_ID)
    print(f"killed -> alarm {raised[0] - killed_at:.2f} s; restarted -> in use again {returned - back_at:.2f} s")
    rows = _window_rows(tmp_path)
    scored = [e for _, e in received if isinstance(e, WindowScored) and e.gated]
    assert len(rows) == len({start for start, _ in rows}) == len(scored) and service.dropped_windows == 0
    used = [embedder for _, embedder in rows]
    first_fallback = used.index("acoustic-v2")
    assert STANDIN_ID in used[:first_fallback] and STANDIN_ID in used[first_fallback:]


def test_a_monitor_started_while_its_server_is_down_runs_on_the_fallback_and_says_so(head: Path,
                                                                                  tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = write_config(tmp_path / "monitor.toml", classifier={"embedder": "hear", "head": str(head)},
                          hear={"backend": "remote", "url": url})
    result = run_crywatch("--config", str(config), "run", "--headless", "--input", "scenario:nicu", "--speed", "0",
                          "--db", f"sqlite:///{tmp_path / 'log.db'}", "--bus", "tcp://127.0.0.1:*", timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"embedder {STANDIN_ID} from {url} (fallback acoustic-v2, head acoustic-v3)" in result.stdout
    assert "ALARM 1 [medium] EMBEDDING SERVER DOWN" in result.stdout and "unreachable" in result.stdout
    assert "cry episode 1 ended" in result.stdout and "embedding server failed" in result.stderr
