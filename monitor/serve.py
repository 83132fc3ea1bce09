"""`crywatch serve-embedder`: one HeAR for a whole unit, on Ray Serve (docs/serving.md says why Ray).

Ray Serve hosts the model in a replica process and gathers requests from many monitors into one
forward pass (dynamic batching: up to [serve] max_batch clips, waiting at most queue_delay_ms for
batch-mates). The wire protocol is the one monitor/embed/remote.py speaks: plain HTTP, so the
monitors need no Ray. Imported only by that command and its tests: Ray is an optional dependency.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from dataclasses import replace
from typing import Any, Callable

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.config import HearSettings, ServeSettings, Settings
from monitor.embed.base import EmbedderError
from monitor.embed.remote import EMBED_PATH, ID_HEADER, INFO_PATH
from monitor.messages import SAMPLE_RATE, WINDOW_SAMPLES

_LOGGER = logging.getLogger(__name__)
_WINDOW_BYTES = WINDOW_SAMPLES * 4
APP_NAME = "crywatch-embedder"


def _clips(batches: list[np.ndarray]) -> int:
    return sum(len(b) for b in batches)


@serve.deployment(max_ongoing_requests=4096)  # a unit's beds all at once; the batcher bounds the work
class HearServer:
    """A replica: one model copy; requests wait (at most the queue delay) to share a forward pass."""

    def __init__(self, hear: HearSettings, max_batch: int, queue_delay_ms: float, threads: int) -> None:
        import torch

        from monitor.embed.hear import load_hear

        torch.set_num_threads(threads)
        self._embedder = load_hear(hear)
        self._max_batch = max_batch
        # Ray's annotations type the batched method as a plain coroutine function, without its setters.
        self.embed_batch.set_max_batch_size(max_batch)  # type: ignore[attr-defined]
        self.embed_batch.set_batch_wait_timeout_s(queue_delay_ms / 1000)  # type: ignore[attr-defined]
        self._served = {"requests": 0, "clips": 0, "batches": 0, "largest_batch": 0}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005, batch_size_fn=_clips)
    async def embed_batch(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        clips = np.concatenate(batches)
        # In a thread, so that the next batch gathers while this one runs (torch releases the GIL).
        vectors = await asyncio.to_thread(self._embedder.embed, clips)
        self._served["batches"] += 1
        self._served["largest_batch"] = max(self._served["largest_batch"], len(clips))
        return np.split(vectors, np.cumsum([len(b) for b in batches])[:-1])

    def describe(self) -> dict[str, Any]:
        return {"id": self._embedder.id, "dim": self._embedder.dim, "window_samples": WINDOW_SAMPLES,
                "sample_rate": SAMPLE_RATE, "max_batch": self._max_batch, "served": dict(self._served)}

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/")
        if path == INFO_PATH and request.method == "GET":
            return JSONResponse(self.describe())
        if path != EMBED_PATH or request.method != "POST":
            return Response(f"no {request.method} {path}: use POST {EMBED_PATH} or GET {INFO_PATH}\n", status_code=404)
        body = await request.body()
        count = len(body) // _WINDOW_BYTES
        if not body or len(body) % _WINDOW_BYTES:
            return Response(f"the body must hold N x {WINDOW_SAMPLES} float32 samples (16 kHz, 2 s windows), "
                            f"got {len(body)} bytes\n", status_code=400)
        if count > self._max_batch:
            return Response(f"{count} windows in one request; this server takes at most {self._max_batch} "
                            "([serve] max_batch)\n", status_code=413)
        windows = np.frombuffer(body, "<f4").reshape(count, WINDOW_SAMPLES)
        if not np.all(np.isfinite(windows)):
            return Response("the windows hold NaN or infinite samples\n", status_code=400)
        try:
            vectors = await self.embed_batch(windows)
        except EmbedderError as exc:
            return Response(f"{exc}\n", status_code=500)
        self._served["requests"] += 1
        self._served["clips"] += count
        return Response(np.ascontiguousarray(vectors, "<f4").tobytes(), media_type="application/octet-stream",
                        headers={ID_HEADER: self._embedder.id})


def served_hear(hear: HearSettings) -> HearSettings:
    """The monitors' [hear] section names the server (backend remote); the server itself runs torch by default."""
    return replace(hear, backend="torch") if hear.backend in ("auto", "remote") else hear


def serve_embedder(settings: Settings, stop: threading.Event | None = None,
                   on_ready: Callable[[str], None] | None = None) -> None:
    """Blocks until SIGTERM/SIGINT (or `stop`): finds the weights first, so a bad setup fails in one line."""
    import ray
    import torch

    from monitor.embed.hear import check_weights, locate_weights

    hear, config = served_hear(settings.hear), settings.serve
    check_weights(locate_weights(hear))  # cheap; the replica loads the model itself
    gpus = 1 if hear.device != "cpu" and torch.cuda.is_available() else 0
    cpus = os.cpu_count() or 1
    threads = max(1, cpus // config.replicas)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING, configure_logging=False)
    stop = stop or _stop_on_signals()  # after ray.init, whose own SIGTERM handler aborts the process
    try:
        serve.start(http_options=_http_options(config), logging_config={"log_level": "WARNING"})
        app = HearServer.options(  # type: ignore[attr-defined]  # serve.deployment returns a Deployment
            num_replicas=config.replicas, ray_actor_options={"num_cpus": threads, "num_gpus": gpus},
        ).bind(hear, config.max_batch, config.queue_delay_ms, threads)
        handle = serve.run(app, name=APP_NAME, route_prefix="/")
        served = handle.describe.remote().result()
        scheme = "https" if config.tls_cert else "http"
        address = f"{scheme}://{config.host}:{config.port}"
        _LOGGER.info("serving %s at %s (max batch %d clips, queue delay %g ms, %d replica(s), %s)", served["id"],
                     address, config.max_batch, config.queue_delay_ms, config.replicas, "cuda" if gpus else "cpu")
        if on_ready is not None:
            on_ready(f"serving {served['id']} at {address}")
        stop.wait()
    finally:
        serve.shutdown()
        ray.shutdown()


def _http_options(config: ServeSettings) -> dict[str, Any]:
    options: dict[str, Any] = {"host": config.host, "port": config.port}
    if config.tls_cert:
        options |= {"ssl_certfile": config.tls_cert, "ssl_keyfile": config.tls_key}
    return options


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
