"""The monitor's side of a shared embedding server (`crywatch serve-embedder`, monitor/serve.py).

Plain HTTP (or HTTPS), so a bedside PC needs no serving engine: POST {url}/v1/embed with the windows as
little-endian float32 bytes (N x 32000) returns N x dim float32 bytes, and the id of the model
that made them in the X-Embedder-Id header; GET {url}/v1/info describes the served model. Every
fault (refused, slow, wrong shape, another model) is an EmbedderError naming the server and the
cause; monitor/embed/failover.py decides what the monitor does about it.
"""
from __future__ import annotations

import http.client
import json
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from monitor.embed.base import EmbedderError, check_windows
from monitor.messages import WINDOW_SAMPLES

EMBED_PATH = "/v1/embed"
INFO_PATH = "/v1/info"
ID_HEADER = "X-Embedder-Id"


class ServedModelMismatch(EmbedderError):
    """The server answers, with vectors of another model than the head was trained on."""


class RemoteEmbedder:
    """An Embedder whose vectors come from the server at `url`.

    `expected_id` (the head's embedder id) makes every answer from another model a fault; without it
    (training, benchmarks) the server is asked once which model it serves.
    """

    def __init__(self, url: str, timeout_s: float, ca_file: str = "", expected_id: str | None = None, dim: int = 512):
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self._host, self._port, self._prefix = parts.hostname or "", parts.port, parts.path
        self._timeout = timeout_s
        self._context = ssl.create_default_context(cafile=ca_file or None) if parts.scheme == "https" else None
        # One kept-alive connection per calling thread (the embedder's, the probe's): a TLS handshake per
        # window would cost the server more than the window's vector.
        self._connections = threading.local()
        self._id = expected_id
        self.dim = dim
        if expected_id is None:
            info = self.info()
            self._id, self.dim = str(info["id"]), int(info["dim"])

    @property
    def id(self) -> str:
        assert self._id is not None
        return self._id

    def info(self) -> dict[str, Any]:
        """What the server serves (and how much it has served): a cheap liveness check."""
        body, _ = self._call("GET", INFO_PATH)
        try:
            info = json.loads(body)
            served_id, dim, samples = str(info["id"]), int(info["dim"]), int(info["window_samples"])
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbedderError(f"{self.url} is not a CryWatch embedding server ({INFO_PATH} said {body[:80]!r})") from exc
        self._check_model(served_id)
        if dim != self.dim or samples != WINDOW_SAMPLES:
            raise EmbedderError(f"{self.url} serves {dim}-d vectors of {samples}-sample windows; this monitor needs "
                                f"{self.dim}-d vectors of {WINDOW_SAMPLES}")
        return info

    def embed(self, windows: np.ndarray) -> np.ndarray:
        batch = check_windows(windows)
        if not len(batch):
            return np.zeros((0, self.dim), np.float32)
        body, headers = self._call("POST", EMBED_PATH, batch.astype("<f4").tobytes())
        self._check_model(headers.get(ID_HEADER, ""))
        if len(body) != len(batch) * self.dim * 4:
            raise EmbedderError(f"{self.url} returned {len(body) // 4} numbers for {len(batch)} windows, expected "
                                f"{len(batch)} x {self.dim}: wrong model or a broken server")
        vectors = np.frombuffer(body, "<f4").reshape(len(batch), self.dim).astype(np.float32)
        if not np.all(np.isfinite(vectors)):
            raise EmbedderError(f"{self.url} returned NaN or infinite vectors: the served model is broken")
        return vectors

    def probe(self) -> None:
        """One silent window through the whole path: answers, in time, with the right shape and model."""
        self.embed(np.zeros((1, WINDOW_SAMPLES), np.float32))

    def _check_model(self, served_id: str) -> None:
        if self._id is not None and served_id != self._id:
            raise ServedModelMismatch(f"{self.url} serves {served_id or 'an unnamed model'}, but the head was trained "
                                      f"on {self._id}: serve that model, or use a head trained on {served_id}")

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._connections, "current", None)
        if connection is None:
            if self._context is not None:
                connection = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout,
                                                         context=self._context)
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._connections.current = connection
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._connections, "current", None)
        if connection is not None:
            connection.close()
        self._connections.current = None

    def _call(self, method: str, path: str, body: bytes | None = None) -> tuple[bytes, Any]:
        """One request on this thread's connection; a kept-alive one the server has since closed is
        opened again once (embedding has no side effects, so asking twice is safe)."""
        while True:
            reused = getattr(self._connections, "current", None) is not None
            connection = self._connection()
            try:
                connection.request(method, self._prefix + path, body=body,
                                   headers={"Content-Type": "application/octet-stream"} if body is not None else {})
                response = connection.getresponse()
                data = response.read()
            except TimeoutError as exc:
                self._drop_connection()
                raise EmbedderError(f"{self.url} did not answer within {self._timeout:g} s") from exc
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop_connection()
                if reused:  # once at most: the next try is on a new connection
                    continue
                raise EmbedderError(f"{self.url} closed the connection ({type(exc).__name__}: {exc})") from exc
            except OSError as exc:  # refused, unresolvable, a certificate this monitor does not trust
                self._drop_connection()
                raise EmbedderError(f"{self.url} is unreachable ({exc})") from exc
            except (http.client.HTTPException, ValueError) as exc:  # cut or malformed answers
                self._drop_connection()
                raise EmbedderError(f"{self.url} failed mid-answer ({type(exc).__name__}: {exc})") from exc
            if response.status != 200:
                detail = data[:200].decode("utf-8", "replace").strip().splitlines()
                raise EmbedderError(f"{self.url} answered {response.status} {response.reason}"
                                    + (f": {detail[0]}" if detail else ""))
            return data, response.headers
