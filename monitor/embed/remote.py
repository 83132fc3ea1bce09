"""The monitor's side of a shared embedding server (`crywatch serve-embedder`, monitor/serve.py).

Plain HTTP, so a bedside PC needs no serving engine: POST {url}/v1/embed with the windows as
little-endian float32 bytes (N x 32000) returns N x dim float32 bytes, and the id of the model
that made them in the X-Embedder-Id header; GET {url}/v1/info describes the served model. Every
fault (refused, slow, wrong shape, another model) is an EmbedderError naming the server and the
cause; monitor/embed/failover.py decides what the monitor does about it.
"""
from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

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
        self._timeout = timeout_s
        self._context = ssl.create_default_context(cafile=ca_file or None) if self.url.startswith("https:") else None
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
        body, _ = self._call(urllib.request.Request(self.url + INFO_PATH))
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
        request = urllib.request.Request(self.url + EMBED_PATH, data=batch.astype("<f4").tobytes(), method="POST",
                                         headers={"Content-Type": "application/octet-stream"})
        body, headers = self._call(request)
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
            raise ServedModelMismatch(f"{self.url} serves {served_id or 'an unnamed model'}, but the head was trained on "
                                f"{self._id}: serve that model, or use a head trained on {served_id}")

    def _call(self, request: urllib.request.Request) -> tuple[bytes, Any]:
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._context) as response:
                return response.read(), response.headers
        except urllib.error.HTTPError as exc:
            detail = exc.read(200).decode("utf-8", "replace").strip().splitlines()
            raise EmbedderError(f"{self.url} answered {exc.code} {exc.reason}"
                                + (f": {detail[0]}" if detail else "")) from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                raise EmbedderError(f"{self.url} did not answer within {self._timeout:g} s") from exc
            raise EmbedderError(f"{self.url} is unreachable ({reason})") from exc
        except TimeoutError as exc:  # the response itself was slower than the timeout
            raise EmbedderError(f"{self.url} did not answer within {self._timeout:g} s") from exc
        except (OSError, ValueError, http.client.HTTPException) as exc:  # resets, cut or malformed answers
            raise EmbedderError(f"{self.url} failed mid-answer ({type(exc).__name__}: {exc})") from exc
