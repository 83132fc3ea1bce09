"""The live driver: capture → ring → gate → embedder → classifier/episodes → store and bus.

One thread per stage with bounded queues between them; the PortAudio callback only copies into the ring,
and every event leaves through the fan-out (bus/fanout.py). The supervisor (the caller's thread) publishes
heartbeats, raises what the health checks (health.py) find, pets the systemd watchdog only while audio really
flows and every stage keeps up, and stops everything in order so the last episode is closed and flushed.
"""
from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Callable

from monitor.alarms import AlarmError, AlarmManager
from monitor.audio import AudioError, InputSpec, PlaybackSource, RingBuffer, Source, StreamClock, open_source
from monitor.bus import Envelope
from monitor.bus.control import ControlReply, ControlRequest
from monitor.bus.endpoints import MonitorEndpoints
from monitor.bus.fanout import Fanout
from monitor.config import ConfigError, Settings, changed_keys, check_watchdog, reloadable
from monitor.health import HealthSupervisor, Observed, StageBeat, sd_notify, stage_lags
from monitor.messages import SAMPLE_RATE, Activity, Embedding, EpisodeSummary, Heartbeat, ServiceStatus, Window, seconds
from monitor.pipeline import Models, Pipeline
from monitor.store import Spool, StoreWriter, close_interrupted, connect, prepare, redact_url, utc
from monitor.workers import END, DropOldestQueue, Worker, describe_error

_LOGGER = logging.getLogger(__name__)
_GATE_POLL_S = 0.02
_STOP_BUDGET_S = 18.0  # 20 s is promised (the unit's TimeoutStopSec is 30): the rest drains the last output lines
_FILE_BACKLOG = 16  # windows a file may queue for the embedder (the queue holds 64; one gate step adds <= 30)
_STORE_RETRY_S = 1.0  # a failing log is tried again this often
_STORE_TRIES_AFTER_END = 5  # at shutdown, a failing log gets these last tries
_SERVER_PROBE_S = 2.0  # with [hear] timeout_s (2 s), a dead embedding server is noticed within 5 s


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    episodes: list[EpisodeSummary]
    alerts: int  # cry alarms raised
    windows: int
    failed: str | None  # the worker error that stopped the service, if any
    input_error: AudioError | None = None  # the input broke off midway (a damaged file): the user's to fix


class Service:
    def __init__(self, settings: Settings, models: Models | None = None,
                 on_message: Callable[[Envelope], None] | None = None):
        """Opens everything that can fail on bad input (head, embedder, audio, database, bus) up front."""
        check_watchdog(settings, os.environ.get("WATCHDOG_USEC"))
        self.settings = settings
        audio = settings.audio
        self.source: Source = open_source(InputSpec.parse(audio.input, audio.device), audio.speed, audio.block_ms)
        self.models = models or Models.load(settings)
        self.run_id = str(uuid.uuid4())
        self.bed = settings.service.bed
        self.ring = RingBuffer(int(audio.ring_seconds * SAMPLE_RATE))
        self.pipeline = Pipeline(settings, self.models)
        # Opened by the store thread (_open_log): a database that is down at start holds up the log, not monitoring.
        self._engine = connect(settings.store.url)
        database = self._engine.url.database if self._engine.dialect.name == "sqlite" else None
        self._log_folder = Path(database).resolve().parent if database else None  # a server's disk is its own
        self._endpoints = MonitorEndpoints(settings.bus, self._on_control)
        self.bus_endpoint = self._endpoints.publisher.endpoint
        self.control_endpoint = self._endpoints.control.endpoint
        self.alarms = AlarmManager(settings.alerts)
        self._speed = audio.speed if not self.source.live else 1.0
        self._stream_clock = StreamClock(self._speed)
        self._spool = Spool(StoreWriter(self._engine, self.run_id, self.bed, self.source.description,
                                        self.models.embedder.id, self.models.head.name, self._wall,
                                        settings.store.log_windows), open_log=self._open_log)
        self._embed_q: DropOldestQueue = DropOldestQueue(maxlen=64)
        self._classify_q: DropOldestQueue = DropOldestQueue(maxlen=256)
        self._bus_q: DropOldestQueue = DropOldestQueue(maxlen=1000)
        self._store_q: DropOldestQueue = DropOldestQueue(maxlen=None)  # nothing may be lost
        self._events = Fanout(self.bed, self._wall, self.alarms, self._store_q, self._bus_q, settings.alerts, on_message)
        self._stop = threading.Event()
        self._reload_from: Callable[[], Settings] | None = None  # set by SIGHUP, taken up by the supervisor
        self._stop_reason: str | None = None  # None at the stop: the input ended
        # A paced playback (a file at speed 0) waits for the stages: being behind is how it runs, not a fault.
        self._paced = not self.source.live and audio.speed == 0
        self._stale_windows = 0  # windows the embedder skipped to catch up
        self._health = "starting"
        self._workers: list[Worker] = []

    @property
    def dropped_windows(self) -> int:
        """Windows lost because a stage fell behind: by the gate (ring lapped, or skipped ahead) or the embedder."""
        return self._embed_q.dropped + self.pipeline.gate.dropped_windows + self._stale_windows

    @property
    def skipped_s(self) -> float:
        """Audio never judged, skipped so that a stage that fell behind could catch up."""
        return round(seconds(self.pipeline.gate.skipped), 1)

    def stage_lags(self) -> dict[str, int]:
        """How far behind the newest audio each stage is, in samples (monitor.health.stage_lags)."""
        held = [(name, (_start_of(queue.oldest()), self._worker(name).busy_from))
                for name, queue in (("embedder", self._embed_q), ("classifier", self._classify_q))]
        return stage_lags(self.ring.end, self.pipeline.gate.decided_to, held)

    @property
    def _max_lag(self) -> int | None:
        """Samples a stage may fall behind before it skips ahead; None for a paced playback, which waits."""
        return None if self._paced else int(self.settings.service.max_lag_s * SAMPLE_RATE)

    # -- time ---------------------------------------------------------------------------------
    def _wall(self, stream_s: float) -> datetime:
        return utc(self._stream_clock.wall(stream_s))

    # -- lifecycle ----------------------------------------------------------------------------
    def request_stop(self, reason: str = "stop requested") -> None:
        """`reason` (e.g. SIGTERM) is published with the stop, so dashboards show a stop, not a lost monitor."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def request_reload(self, load: Callable[[], Settings]) -> None:
        """SIGHUP: the supervisor reads the settings again with `load` at its next check (safe in a signal handler)."""
        self._reload_from = load

    def run(self) -> RunSummary:
        """Blocks until the input ends, a stop is requested, a worker fails or the input breaks off."""
        if isinstance(self.source, PlaybackSource):
            self.source.set_consumer_progress(lambda: self.pipeline.gate.needed_from)
        self._workers = [
            Worker("store", self._store_loop),
            Worker("bus", self._bus_loop),
            Worker("classifier", self._classify_loop),
            Worker("embedder", self._embed_loop),
            Worker("gate", self._gate_loop),
            Worker("control", self._control_loop),
        ] + ([Worker("server-probe", self._probe_loop)] if self.models.failover is not None else [])
        if self._events.pager is not None:
            self._events.pager.start()
        for worker in self._workers:
            worker.start()
        self._stream_clock.anchor(0.0)
        self.source.start(self.ring)
        self._events.emit(ServiceStatus(0, "started", {
            "source": self.source.description, "detector": self.models.detector.id,
            "embedder": self.models.embedder.id, "head": self.models.head.name, "bus": self.bus_endpoint,
            "control": self.control_endpoint,
            "unsupported_alert_classes": list(self.pipeline.classifier.unsupported_alert_classes)}))
        sd_notify("READY=1\nSTATUS=listening: " + self.source.description)
        failed = self._supervise()
        self._shutdown(failed)
        events = self._events
        return RunSummary(self.run_id, events.recent, events.alerts, events.windows, failed, self.source.error)

    def _supervise(self) -> str | None:
        health = HealthSupervisor(self.settings.service, self._max_lag, self._log_folder, self.settings.store.min_free_mb,
                                  release=lambda: self.source.stop(), reopen=self._reopen_microphone, end=self.ring.end,
                                  now=time.monotonic())
        next_beat = 0.0
        while not self._stop.wait(0.1):
            load, self._reload_from = self._reload_from, None
            if load is not None:
                self._reload(load)
            for worker in self._workers:
                if worker.error is not None:
                    failed = f"{worker.name} worker failed: {describe_error(worker.error)['error']}"
                    self._events.alarm_events(lambda: self.alarms.fault("monitor_failed", True, self.ring.end, failed))
                    return failed
            if self.source.error is not None:  # checked first: the stages end as if the input had ended
                failed = f"input failed: {self.source.error}"
                self._events.alarm_events(lambda: self.alarms.fault("monitor_failed", True, self.ring.end, failed))
                return failed
            if not self._worker("gate").is_alive() and not self._worker("classifier").is_alive():
                return None  # the input ended and everything downstream drained
            now = time.monotonic()
            for fault in health.check(self._observed(), now):
                self._events.alarm_events(lambda: self.alarms.fault(fault.label, fault.active, self.ring.end, fault.detail))
            self._health = ", ".join(health.problems) or "ok"
            self._events.alarm_events(lambda: self.alarms.tick(self.ring.end))
            if now >= next_beat:
                next_beat = now + self.settings.bus.heartbeat_s
                self._events.emit(self._heartbeat())
                if health.keeps_up:  # systemd restarts what stops petting it
                    sd_notify("WATCHDOG=1")
        return None

    def _reload(self, load: Callable[[], Settings]) -> None:
        """Alert settings (thresholds, alarm timing and priorities, paging) change at once, without a gap in
        monitoring; a changed key that needs a restart is named and keeps its running value. A config that
        does not validate changes nothing."""
        try:
            new = load()
            self.pipeline.reconfigure(new.alerts)  # checked against the head before anything changes
        except ConfigError as exc:
            _LOGGER.error("reload refused, the running settings stay: %s", exc)
            self._events.emit(ServiceStatus(self.ring.end, "reload_refused", {"error": str(exc)}))
            return
        except Exception as exc:  # noqa: BLE001 - a reload must never end monitoring; the journal gets the traceback
            _LOGGER.exception("reload refused, the running settings stay: unexpected %s", exc.__class__.__name__)
            self._events.emit(ServiceStatus(self.ring.end, "reload_refused", describe_error(exc)))
            return
        changed = changed_keys(self.settings, new)
        applied, restart = [k for k in changed if reloadable(k)], [k for k in changed if not reloadable(k)]
        if applied:
            self.alarms.reconfigure(new.alerts)
            self._events.page_with(new.alerts)
            self.settings = replace(self.settings, alerts=new.alerts)
        _LOGGER.info("config reloaded: %s in effect", ", ".join(applied) or "no change")
        if restart:
            _LOGGER.warning("config reloaded: %s changed but take effect only after a restart "
                            "(systemctl restart crywatch)", ", ".join(restart))
        self._events.emit(ServiceStatus(self.ring.end, "reloaded", {"applied": applied, "needs_restart": restart}))

    def _observed(self) -> Observed:
        """What the health supervisor reads of the service at one check."""
        failover = self.models.failover
        return Observed(
            end=self.ring.end, last_sound=self.ring.last_sound, nonfinite=self.ring.nonfinite, live=self.source.live,
            lost=self.source.live and self.source.finished, source=self.source.description,
            stages=tuple(StageBeat(w.name, w.is_alive(), w.last_beat) for w in self._workers),
            lags=self.stage_lags() if self._max_lag is not None else {}, skipped_s=self.skipped_s,
            server_fault=failover.fault if failover is not None else None, laps=self.pipeline.gate.laps,
            overwritten=self.ring.oldest > self.pipeline.gate.fed)

    def _reopen_microphone(self) -> str:
        """The lost microphone opened again into the same ring (AudioError while it is still gone)."""
        audio = self.settings.audio
        source = open_source(InputSpec.parse(audio.input, audio.device), audio.speed, audio.block_ms, rescan=True)
        source.start(self.ring)
        self.source = source
        self._stream_clock.anchor(seconds(self.ring.end))  # stream time lost the outage: wall clock did not
        return source.description

    def _shutdown(self, failed: str | None) -> None:
        """In order, so the last episode is closed and flushed, and within _STOP_BUDGET_S whatever
        hangs: systemd kills a unit that overruns its stop timeout, losing what was not written."""
        deadline = time.monotonic() + _STOP_BUDGET_S

        def join(name: str, most: float) -> bool:
            worker = self._worker(name)
            worker.join(timeout=max(0.1, min(most, deadline - time.monotonic())))
            if worker.is_alive():
                _LOGGER.error("%s stage did not stop in time; going on without it", name)
            return not worker.is_alive()

        self._stop.set()
        self.source.stop()
        if not join("gate", 5) or failed:  # a dead stage must not keep END from the ones after it
            self._embed_q.put(END)
            self._classify_q.put(END)
        if not join("embedder", 10):  # a hung embedder must not keep the open episode from closing
            self._classify_q.put(END)
        join("classifier", 5)
        join("control", 1)
        if self.models.failover is not None:
            join("server-probe", 3)
        self._events.alarm_events(lambda: self.alarms.finish(self.ring.end, "monitor stopped"))
        self._events.emit(ServiceStatus(self.ring.end, "failed" if failed else "stopped", {
            "reason": failed or self._stop_reason or "end of input",
            "overruns": self.source.overruns, "dropped_windows": self.dropped_windows,
            "skipped_s": self.skipped_s,
            "log_events_lost": self._log_events_lost(deadline)}))
        self._store_q.put(END)
        self._bus_q.put(END)
        for name in ("store", "bus"):
            join(name, deadline - time.monotonic())
        if self._events.pager is not None:
            self._events.pager.stop(timeout_s=max(0.1, min(self.settings.alerts.command_timeout_s, deadline - time.monotonic())))
        self._endpoints.close()
        self._engine.dispose()
        sd_notify("STOPPING=1")

    def _log_events_lost(self, deadline: float) -> int:
        """For the stop status: events the log will not get. The store gets its last tries first; a database
        still refusing after them is given up on, so what then waits (this status too) is exactly what is lost."""
        settle = min(deadline, time.monotonic() + _STORE_TRIES_AFTER_END * _STORE_RETRY_S)
        while (len(self._store_q) or self._spool.pending) and time.monotonic() < settle:
            time.sleep(0.05)
        if not self._spool.failing:
            return self._spool.lost
        self._spool.abandon()
        return self._spool.lost + len(self._spool.pending) + len(self._store_q) + 1

    def _worker(self, name: str) -> Worker:
        return next(w for w in self._workers if w.name == name)

    # -- stages ---------------------------------------------------------------------------------
    def _gate_loop(self, me: Worker) -> None:
        gate = self.pipeline.gate
        while True:
            me.beat()
            # A file has no deadline: rather than drop windows the embedder cannot take yet, wait for
            # it (the playback waits for the gate in turn). A microphone cannot wait: it drops, counted.
            while not self.source.live and len(self._embed_q) >= _FILE_BACKLOG and not self._stop.is_set():
                me.beat()
                time.sleep(_GATE_POLL_S)
            # A file or scenario ends; a lost microphone does not end the stream: the supervisor reopens it.
            finished = self.source.finished and not self.source.live
            output = gate.advance(self.ring, final=finished, behind_limit=self._max_lag)
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
            limit = self._max_lag
            if limit is not None:  # catch up: windows already too old to alarm in time are skipped, counted
                fresh = [w for w in windows if self.ring.end - w.start <= limit]
                self._stale_windows += len(windows) - len(fresh)
                windows = fresh
            if windows:
                me.busy_from = windows[0].start
                self._classify_q.put(self.pipeline.embed(windows))
                me.busy_from = None
            if any(i is END for i in items):
                self._classify_q.put(END)
                return

    def _classify_loop(self, me: Worker) -> None:
        while True:
            me.beat()
            for item in self._classify_q.get_batch(4, timeout=0.2):
                if item is END:
                    self._events.emit_all(self.pipeline.finish())
                    return
                me.busy_from = _start_of(item)
                if isinstance(item, Activity):
                    self._events.emit_all(self.pipeline.observe(item))
                else:
                    self._events.emit_all(self.pipeline.classify(item))
                me.busy_from = None

    def _open_log(self) -> None:
        """Before the store's first write, and again until it works: the log migrated and written to once,
        then what a run of this bed that died (kill -9, power cut) left open is closed."""
        prepare(self._engine)
        episodes, alarms = close_interrupted(self._engine, self.bed, utc(time.time()))
        if episodes or alarms:
            _LOGGER.warning("closed %d episode(s) and %d alarm(s) that an interrupted run of %s left open",
                            episodes, alarms, self.bed)
            self._events.emit(ServiceStatus(self.ring.end, "recovered",
                                            {"interrupted_episodes": episodes, "interrupted_alarms": alarms}))

    def _store_loop(self, me: Worker) -> None:
        """The database may fail; alerting may not: refused events wait in the spool, a technical
        alarm says so, and they are written, in order, when the database takes them again."""
        spool, ending = self._spool, False
        while True:
            me.beat()
            batch = self._store_q.get_batch(Spool.BATCH, timeout=0.5)
            ending = ending or any(m is END for m in batch)
            spool.offer([m for m in batch if m is not END])
            was_failing = spool.failing
            written = spool.flush()
            if spool.failing and not was_failing:
                _LOGGER.error("log %s refuses writes, keeping events in memory: %s", redact_url(self.settings.store.url),
                              spool.failing)
                problem = spool.failing
                self._events.alarm_events(lambda: self.alarms.fault("log_failing", True, self.ring.end, problem))
            elif was_failing and not spool.failing:
                _LOGGER.warning("log writes again; the events kept meanwhile are written")
                self._events.alarm_events(lambda: self.alarms.fault("log_failing", False, self.ring.end))
            if ending and written and not len(self._store_q):
                return
            if not written:
                if ending:  # its last tries came before the stop status (_log_events_lost)
                    _LOGGER.error("stopping with %d events the log never took", len(spool.pending))
                    return
                time.sleep(_STORE_RETRY_S)

    def _bus_loop(self, me: Worker) -> None:
        while True:
            me.beat()
            for envelope in self._bus_q.get_batch(64, timeout=0.2):
                if envelope is END:
                    return
                self._endpoints.publisher.publish(envelope)

    def _control_loop(self, me: Worker) -> None:
        while not self._stop.is_set():
            me.beat()
            self._endpoints.control.serve_once(timeout_ms=100)

    def _probe_loop(self, me: Worker) -> None:
        failover = self.models.failover
        assert failover is not None
        while not self._stop.is_set():
            me.beat()
            failover.probe()
            me.beat()
            self._stop.wait(_SERVER_PROBE_S)

    def _on_control(self, request: ControlRequest) -> ControlReply:
        """A dashboard acknowledges or silences (runs in the control thread; the manager locks), or acknowledges an
        alarm an earlier run of this bed left when it stopped (into the log and onto the bus)."""
        earlier, alarms = request.earlier, self.alarms
        try:
            if earlier is not None:
                self._events.alarm_events(lambda: alarms.acknowledge_earlier(earlier, request.by, self.ring.end))
            else:
                act = alarms.acknowledge if request.op == "acknowledge" else alarms.silence
                self._events.alarm_events(lambda: act(request.alarm, request.by, self.ring.end))
        except AlarmError as exc:
            return ControlReply(False, str(exc), alarms.active)
        return ControlReply(True, alarms=alarms.active)

    def _embedder_in_use(self) -> str:
        failover = self.models.failover
        return failover.fallback.id if failover is not None and failover.fault else self.models.embedder.id

    def _heartbeat(self) -> Heartbeat:
        current = self.pipeline.spells.current
        lags = self.stage_lags()
        return Heartbeat(
            time=self.ring.end, health=self._health, source=self.source.description, detector=self.models.detector.id,
            embedder=self._embedder_in_use(), head=self.models.head.name, classes=self.models.head.classes,
            control=self.control_endpoint, alarms=self.alarms.active,
            unsupported_alert_classes=self.pipeline.classifier.unsupported_alert_classes,
            episode=self._events.with_wall_times(current.summary(open_=True)) if current else None,
            recent=tuple(self._events.recent), overruns=self.source.overruns, dropped_windows=self.dropped_windows,
            lag_s=round(seconds(max(lags.values())), 2), heard_s=round(seconds(self.ring.end), 1),
            stage_lag_s={name: round(seconds(lag), 2) for name, lag in lags.items()}, skipped_s=self.skipped_s)


def _start_of(item: object) -> int | None:
    """The stream sample a queued item's audio starts at (a gate window, detector frames, embedded windows)."""
    match item:
        case Window(start=start) | Activity(start=start):
            return start
        case [Embedding(window=Window(start=start)), *_]:
            return start
    return None
