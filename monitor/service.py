"""The live driver: capture → ring → gate → embedder → classifier/episodes → store and bus.

One thread per stage with bounded queues between them; the PortAudio callback only copies into
the ring. The supervisor (the caller's thread) watches progress, publishes heartbeats, reports
health changes, pets the systemd watchdog only while audio really flows, and stops everything
in order so the last episode is closed and flushed.
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from monitor.audio import InputSpec, PlaybackSource, RingBuffer, Source, open_source
from monitor.bus import Publisher, to_message
from monitor.config import Settings
from monitor.messages import SAMPLE_RATE, Activity, Event, seconds
from monitor.pipeline import Models, Pipeline
from monitor.store import StoreWriter, open_engine, utc
from monitor.workers import END, DropOldestQueue, Worker, describe_error

_GATE_POLL_S = 0.02
_RECENT_EPISODES = 8


def sd_notify(state: str) -> None:
    """systemd's notify protocol (READY=1, WATCHDOG=1, STATUS=...); a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode(), address)


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    episodes: list[dict[str, Any]]
    alerts: int
    windows: int
    failed: str | None  # the worker error that stopped the service, if any


class Service:
    def __init__(self, settings: Settings, models: Models | None = None,
                 on_message: Callable[[dict[str, Any]], None] | None = None):
        """Opens everything that can fail on bad input (head, embedder, audio, database, bus) up front."""
        self.settings = settings
        audio = settings.audio
        self.source: Source = open_source(InputSpec.parse(audio.input, audio.device), audio.speed, audio.block_ms)
        self.models = models or Models.load(settings)
        self.run_id = str(uuid.uuid4())
        self.bed = settings.service.bed
        self._on_message = on_message
        self.ring = RingBuffer(int(audio.ring_seconds * SAMPLE_RATE))
        self.pipeline = Pipeline(settings, self.models)
        self._engine = open_engine(settings.store.url)
        self._publisher = Publisher(settings.bus.endpoint)
        self.bus_endpoint = self._publisher.endpoint
        self._t0 = time.time()
        self._speed = audio.speed if not self.source.live else 1.0
        self._writer = StoreWriter(self._engine, self.run_id, self.bed, self.source.description,
                                   self.models.embedder.id, self.models.head.name, self._wall,
                                   settings.store.log_windows)
        self._embed_q: DropOldestQueue = DropOldestQueue(maxlen=64)
        self._classify_q: DropOldestQueue = DropOldestQueue(maxlen=256)
        self._bus_q: DropOldestQueue = DropOldestQueue(maxlen=1000)
        self._store_q: DropOldestQueue = DropOldestQueue(maxlen=None)  # nothing may be lost
        self._stop = threading.Event()
        self._stopped_at: int | None = None
        self._classified_to = 0
        self.recent: list[dict[str, Any]] = []
        self.windows = 0
        self.alerts = 0
        self._health = "starting"
        self._workers: list[Worker] = []

    @property
    def dropped_windows(self) -> int:
        """Windows lost because a stage fell behind: by the gate (ring lapped) or the embedder queue."""
        return self._embed_q.dropped + self.pipeline.gate.dropped_windows

    # -- time ---------------------------------------------------------------------------------
    def _wall(self, stream_s: float) -> datetime:
        return utc(self._t0 + stream_s / (self._speed or 1.0))

    # -- lifecycle ----------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()

    def run(self) -> RunSummary:
        """Blocks until the input ends, a stop is requested, or a worker fails."""
        if isinstance(self.source, PlaybackSource):
            self.source.set_consumer_progress(lambda: self.pipeline.gate.needed_from)
        self._workers = [
            Worker("store", self._store_loop),
            Worker("bus", self._bus_loop),
            Worker("classifier", self._classify_loop),
            Worker("embedder", self._embed_loop),
            Worker("gate", self._gate_loop),
        ]
        for worker in self._workers:
            worker.start()
        self._t0 = time.time()
        self.source.start(self.ring)
        self._emit(Event("health", 0, {"state": "service_started", "source": self.source.description,
                                       "detector": self.models.detector.id, "embedder": self.models.embedder.id,
                                       "head": self.models.head.name, "bus": self.bus_endpoint, "unsupported_alert_classes":
                                       list(self.pipeline.classifier.unsupported_alert_classes)}))
        sd_notify("READY=1\nSTATUS=listening: " + self.source.description)
        failed = self._supervise()
        self._shutdown(failed)
        return RunSummary(self.run_id, self.recent, self.alerts, self.windows, failed)

    def _supervise(self) -> str | None:
        next_beat = 0.0
        last_end, last_progress, stalled = self.ring.end, time.monotonic(), False
        while not self._stop.wait(0.1):
            for worker in self._workers:
                if worker.error is not None:
                    return f"{worker.name} worker failed: {describe_error(worker.error)['error']}"
            if self.source.live and self.source.finished:  # e.g. the USB microphone was unplugged
                return f"{self.source.description} stopped delivering audio (device removed or failed)"
            if not self._worker("gate").is_alive() and not self._worker("classifier").is_alive():
                return None  # the input ended and everything downstream drained
            now = time.monotonic()
            if self.ring.end != last_end:
                last_end, last_progress = self.ring.end, now
                if stalled:
                    stalled = False
                    self._emit(Event("health", self.ring.end, {"state": "audio_resumed"}))
            elif self.source.live and not stalled and now - last_progress > self.settings.service.stall_s:
                # A dead microphone must never look like a quiet room.
                stalled = True
                self._emit(Event("health", self.ring.end, {"state": "audio_stalled",
                                                            "silent_for_s": round(now - last_progress, 1)}))
            self._health = "audio stalled" if stalled else "ok"
            if now >= next_beat:
                next_beat = now + self.settings.bus.heartbeat_s
                self._bus_q.put(self._status_message())
                if not stalled:
                    sd_notify("WATCHDOG=1")
        return None

    def _shutdown(self, failed: str | None) -> None:
        self._stopped_at = self.ring.end
        self.source.stop()
        if failed:
            self._emit(Event("health", self.ring.end, {"state": "worker_failed", "error": failed}))
        gate = self._worker("gate")
        gate.join(timeout=10)
        if gate.is_alive() or failed:  # a dead stage must not keep END from the ones after it
            self._embed_q.put(END)
            self._classify_q.put(END)
        for name in ("embedder", "classifier"):
            self._worker(name).join(timeout=30)
        self._emit(Event("health", self.ring.end, {"state": "service_stopped", "reason": failed or "stopped",
                                                   "overruns": self.source.overruns,
                                                   "dropped_windows": self.dropped_windows}))
        self._store_q.put(END)
        self._bus_q.put(END)
        for name in ("store", "bus"):
            self._worker(name).join(timeout=30)
        self._publisher.close()
        self._engine.dispose()
        sd_notify("STOPPING=1")

    def _worker(self, name: str) -> Worker:
        return next(w for w in self._workers if w.name == name)

    # -- stages ---------------------------------------------------------------------------------
    def _gate_loop(self, me: Worker) -> None:
        gate = self.pipeline.gate
        while True:
            me.beat()
            finished = self.source.finished
            output = gate.advance(self.ring, final=finished)
            if output.activity is not None:  # frames skip the embedder: episodes open without waiting for it
                self._classify_q.put(output.activity)
            for window in output.windows:
                self._embed_q.put(window)
            if finished or self._stop.is_set():
                self._embed_q.put(END)
                return
            time.sleep(_GATE_POLL_S)

    def _embed_loop(self, me: Worker) -> None:
        max_batch = self.settings.classifier.max_batch
        while True:
            me.beat()
            # When behind, take several windows at once: batching is cheaper per window.
            items = self._embed_q.get_batch(max_batch, timeout=0.2)
            windows = [w for w in items if w is not END]
            if windows:
                self._classify_q.put(self.pipeline.embed(windows))
            if any(i is END for i in items):
                self._classify_q.put(END)
                return

    def _classify_loop(self, me: Worker) -> None:
        while True:
            me.beat()
            for item in self._classify_q.get_batch(4, timeout=0.2):
                if item is END:
                    self._emit_all(self.pipeline.finish())
                    return
                if isinstance(item, Activity):
                    self._emit_all(self.pipeline.observe(item))
                else:
                    self._emit_all(self.pipeline.classify(item))
                    self._classified_to = item[-1].window.end

    def _store_loop(self, me: Worker) -> None:
        while True:
            me.beat()
            batch = self._store_q.get_batch(256, timeout=0.5)
            messages = [m for m in batch if m is not END]
            if messages:
                self._writer.write(messages)
            if len(messages) < len(batch):
                return

    def _bus_loop(self, me: Worker) -> None:
        while True:
            me.beat()
            for message in self._bus_q.get_batch(64, timeout=0.2):
                if message is END:
                    return
                self._publisher.publish(message)

    # -- events ---------------------------------------------------------------------------------
    def _emit_all(self, events: list[Event]) -> None:
        for event in events:
            self._emit(event)

    def _emit(self, event: Event) -> None:
        message = to_message(event, self.bed, self._wall(seconds(event.time)))
        if event.kind == "window":
            self.windows += 1
        elif event.kind == "alert_raised":
            self.alerts += 1
        if event.kind.startswith("episode_"):
            message["data"] = self._with_wall_times(event.data)
        if event.kind == "episode_closed":
            self.recent = (self.recent + [message["data"]])[-_RECENT_EPISODES:]
        self._store_q.put(message)
        self._bus_q.put(message)
        if self._on_message is not None:
            self._on_message(message)

    def _with_wall_times(self, episode: dict[str, Any]) -> dict[str, Any]:
        """Staff read clock times: attached here, at the edge, like every other wall-clock time."""
        end = episode["end_s"]
        return {**episode, "start_time": self._wall(episode["start_s"]).isoformat(),
                "end_time": None if end is None else self._wall(end).isoformat()}

    def _status_message(self) -> dict[str, Any]:
        current = self.pipeline.episodes.current
        data = {
            "health": self._health,
            "source": self.source.description,
            "detector": self.models.detector.id,
            "embedder": self.models.embedder.id,
            "head": self.models.head.name,
            "classes": list(self.models.head.classes),
            "alerts": self.pipeline.classifier.active_alerts,
            "unsupported_alert_classes": list(self.pipeline.classifier.unsupported_alert_classes),
            "episode": self._with_wall_times(current.summary(open_=True)) if current else None,
            "recent": self.recent,
            "overruns": self.source.overruns,
            "dropped_windows": self.dropped_windows,
            "lag_s": round(max(0, self.ring.end - self._classified_to - 32_000) / SAMPLE_RATE, 2),
            "heard_s": round(seconds(self.ring.end), 1),
        }
        return to_message(Event("status", self.ring.end, data), self.bed, utc(time.time()))
