"""The review log: SQLAlchemy 2.0 models and the writer that turns events into rows.

SQLite in WAL mode by default (readers such as `crywatch episodes` never block the writer);
any SQLAlchemy URL works. An episode row is written when the episode opens, with end NULL,
so a watcher sees it at once.
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, DateTime, ForeignKey, LargeBinary, String, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from monitor.bus import Envelope
from monitor.config import BED_MAX_LENGTH, LABEL_MAX_LENGTH
from monitor.messages import (
    Alarm,
    AlarmAcknowledged,
    AlarmAnnounced,
    AlarmCleared,
    AlarmRaised,
    AlarmSilenced,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeSummary,
    EpisodeUpdated,
    Heartbeat,
    ServiceStatus,
    WindowEmbedded,
    WindowScored,
)

_LOGGER = logging.getLogger("monitor.store")  # the journal's name for these lines, as before the package


class StoreError(RuntimeError):
    """The log cannot be opened or written; the message names the URL and the fix."""


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class EpisodeRow(Base):
    __tablename__ = "episodes"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    number: Mapped[int]  # episode number within the run
    bed: Mapped[str] = mapped_column(String(BED_MAX_LENGTH), index=True)
    source: Mapped[str]
    start: Mapped[datetime] = mapped_column(index=True)
    end: Mapped[datetime | None]
    label: Mapped[str] = mapped_column(String(LABEL_MAX_LENGTH))
    probs: Mapped[dict[str, Any]]
    peak: Mapped[dict[str, Any]]
    windows: Mapped[int]
    alerted: Mapped[bool]
    embedder_id: Mapped[str]
    head: Mapped[str]
    interrupted: Mapped[bool] = mapped_column(default=False)  # closed at the next start: its run died
    # A crying spell's running totals (monitor/spells/): None/0 in a log older than spells.
    last: Mapped[datetime | None]  # the newest cry frame
    crying_s: Mapped[float] = mapped_column(default=0.0)
    bouts: Mapped[int] = mapped_column(default=0)
    voiced_s: Mapped[float] = mapped_column(default=0.0)
    high_pitch_s: Mapped[float] = mapped_column(default=0.0)
    f0_median_hz: Mapped[float | None]
    evidence: Mapped[dict[str, Any] | None]  # per alert class, the spell's mean evidence as a probability


class WindowRow(Base):
    __tablename__ = "windows"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    bed: Mapped[str] = mapped_column(String(BED_MAX_LENGTH))
    start: Mapped[datetime] = mapped_column(index=True)
    level_dbfs: Mapped[float]
    activity: Mapped[float]
    raw: Mapped[dict[str, Any]]
    smoothed: Mapped[dict[str, Any]]
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id"))


class WindowEmbeddingRow(Base):
    """A gated window's embedding (`[store] log_embeddings`): numbers, not audio."""

    __tablename__ = "window_embeddings"
    id: Mapped[int] = mapped_column(primary_key=True)
    window_id: Mapped[int] = mapped_column(ForeignKey("windows.id"), index=True)
    embedder_id: Mapped[str]
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian


class AlarmRow(Base):
    """One alarm per row, updated through its lifecycle (raised -> acknowledged -> cleared).

    Replaces schema 1's `alerts` table, which an old log keeps untouched."""

    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    alarm: Mapped[int]  # the alarm's id within its run
    bed: Mapped[str] = mapped_column(String(BED_MAX_LENGTH), index=True)
    label: Mapped[str] = mapped_column(String(LABEL_MAX_LENGTH))
    technical: Mapped[bool]
    priority: Mapped[str] = mapped_column(String(8))
    message: Mapped[str]
    raised: Mapped[datetime] = mapped_column(index=True)
    acknowledged: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(16))
    silenced: Mapped[datetime | None]  # the last audio pause, when it was asked for
    cleared: Mapped[datetime | None]
    clear_reason: Mapped[str | None]
    announcements: Mapped[int]
    probability: Mapped[float | None]
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id"))


class ServiceEventRow(Base):
    __tablename__ = "service_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    bed: Mapped[str] = mapped_column(String(BED_MAX_LENGTH))
    time: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]]


_BUSY_TIMEOUT_MS = 5000
# Another monitor migrating the same new log (beds started together) holds its write lock for the whole
# migration, which once outlasted the ordinary 5 s wait (the full test suite on a loaded machine); 20 s stays
# well inside [service] stage_timeout_s.
_MIGRATION_WAIT_MS = 20_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")  # first: switching a new log to WAL may wait too
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the bedside writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint, cheap commits
    cursor.close()


MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PRE_MIGRATION_REVISION = "0001"  # what a log written before migrations existed holds
# Alembic's `op` and `context` are module-wide proxies to the one migration being run: two at once in one
# process (two monitors' store threads, as in the tests) sent each other's DDL to the wrong database.
_ALEMBIC = threading.Lock()
_POSTGRESQL_MIGRATION_LOCK = 0x43525957  # pg_advisory_xact_lock key ("CRYW"): one migration of a database at a time


_CONNECT_TIMEOUT_S = 10  # a database server that does not answer must not hold the log's thread for minutes


def open_engine(url: str) -> Engine:
    """The log at `url`, created or upgraded to this CryWatch's schema (Alembic migrations)."""
    engine = connect(url)
    prepare(engine)
    return engine


def connect(url: str) -> Engine:
    """An engine for `url`, not yet connected: only a URL that can never work (unknown database kind,
    missing driver, malformed) is an error here."""
    try:
        parsed = make_url(url)
        server = parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query
        engine = create_engine(parsed, **({"connect_args": {"connect_timeout": _CONNECT_TIMEOUT_S}} if server else {}))
    except (ArgumentError, ImportError, ValueError) as exc:
        raise StoreError(f"database URL {redact_url(url)!r} is not usable ({redact_url(str(exc))}): "
                         "use e.g. sqlite:///crywatch.db") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def prepare(engine: Engine) -> None:
    """The log created or upgraded to this CryWatch's schema and written to once; StoreError (naming
    the fix) if the database is unreachable, unwritable or newer than this CryWatch."""
    shown = redact_url(engine.url.render_as_string(hide_password=True))
    if engine.dialect.name == "sqlite":
        _create_private(engine.url.database)
    try:
        _migrate(engine)
    except SQLAlchemyError as exc:
        detail = redact_url(str(exc.orig if hasattr(exc, "orig") else exc))
        raise StoreError(f"cannot open database {shown!r} ({exc.__class__.__name__}: {detail}): "
                         "check the path exists and is writable, or that the server is up") from exc


def redact_url(text: str) -> str:
    """A URL (or a message quoting one) with any password replaced, as user:password@ or as a query
    parameter (?password=): errors end up in journald."""
    text = re.sub(r"(://[^:/@\s]*):[^@\s]*@", r"\1:***@", text)
    # Any key ending so: libpq's sslpassword (the client key's passphrase) as well as password.
    return re.sub(r"(\b\w*(?:password|passwd|pwd)=)[^&\s'\"]*", r"\1***", text, flags=re.IGNORECASE)


def _create_private(path: str | None) -> None:
    """A new SQLite log is readable by its owner only (beds, times, cry types are patient data);
    SQLite gives its -wal and -shm files the same mode."""
    if not path or path == ":memory:" or Path(path).exists():
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    except OSError:
        pass  # SQLAlchemy reports the unusable path with its fix


def _migrate(engine: Engine) -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    head = scripts.get_current_head()
    shown = redact_url(engine.url.render_as_string(hide_password=True))  # hide_password misses ?password=
    # The process lock outside the transaction: a second monitor in this process starts only once the first has
    # committed, never waiting on its open write lock (busy_timeout ran out on a loaded CI machine).
    with _ALEMBIC, engine.begin() as connection:
        _lock_for_migration(connection)
        config.attributes["connection"] = connection
        current = MigrationContext.configure(connection).get_current_revision()  # read under the lock
        if current is None and "episodes" in inspect(connection).get_table_names():
            current = _PRE_MIGRATION_REVISION
            alembic_command.stamp(config, current)
        if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
            raise StoreError(f"{shown} was written by a newer CryWatch "
                             f"(log schema {current}, this one knows up to {head}): upgrade CryWatch, or use another log")
        if current != head:
            alembic_command.upgrade(config, "head")
            if current is not None:
                _LOGGER.warning("log %s upgraded from schema %s to %s", shown, current, head)
        # A write now, before the service says it is ready: a read-only log must fail here, not at the first episode.
        connection.execute(text("UPDATE alembic_version SET version_num = version_num"))


def _lock_for_migration(connection: Connection) -> None:
    """The database's own write lock, for the whole migration: monitors opening one new log at once (beds
    sharing a log, started together) take turns, and the later ones find it at head instead of creating the
    same tables again. On SQLite it also makes the migration one transaction (pysqlite runs DDL outside any),
    so one that fails halfway (disk full) leaves no half-made schema to fail on at every later try."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(f"PRAGMA busy_timeout={_MIGRATION_WAIT_MS}")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # waits up to busy_timeout for another writer
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRESQL_MIGRATION_LOCK})


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def as_utc(value: datetime) -> datetime:
    """A datetime read from the log, zoned: SQLite hands back naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class StoreWriter:
    """Applies events to the database. Call from one thread only."""

    def __init__(self, engine: Engine, run_id: str, bed: str, source: str, embedder_id: str, head: str,
                 clock: Callable[[float], datetime], log_windows: bool = True):
        self._engine = engine
        self._run, self._bed, self._source = run_id, bed, source
        self._embedder_id, self._head = embedder_id, head
        self._clock = clock  # stream seconds → wall-clock UTC
        self._log_windows = log_windows
        self._episode_ids: dict[int, int] = {}
        self._alarm_ids: dict[int, int] = {}
        self._alarm_raised: dict[int, str] = {}  # this run's alarms' raised times: ids start at 1 in every run
        self._current_episode: int | None = None
        self._last_window: tuple[int, float] | None = None  # (row id, start_s) of the newest window row

    def write(self, envelopes: list[Envelope]) -> None:
        """One transaction per batch: what was handed over is either all stored or raises, and then
        this writer is as it was before (row ids given out by the failed transaction are forgotten)."""
        saved = (dict(self._episode_ids), dict(self._alarm_ids), dict(self._alarm_raised), self._current_episode,
                 self._last_window)
        try:
            with Session(self._engine) as session, session.begin():
                for envelope in envelopes:
                    self._apply(session, envelope)
        except BaseException:
            self._episode_ids, self._alarm_ids, self._alarm_raised, self._current_episode, self._last_window = saved
            raise

    def _apply(self, session: Session, envelope: Envelope) -> None:
        match envelope.event:
            case WindowScored() as window:
                if self._log_windows and window.gated:
                    row = WindowRow(run_id=self._run, bed=self._bed, start=self._clock(window.start_s),
                                    level_dbfs=window.level_dbfs, activity=window.activity, raw=window.raw,
                                    smoothed=window.smoothed, episode_id=self._current_episode)
                    session.add(row)
                    session.flush()
                    self._last_window = row.id, window.start_s
            case WindowEmbedded() as embedded:  # follows its WindowScored
                if self._last_window is not None and self._last_window[1] == embedded.start_s:
                    session.add(WindowEmbeddingRow(window_id=self._last_window[0], embedder_id=embedded.embedder_id,
                                                   vector=embedded.vector.astype("<f4").tobytes()))
            case EpisodeOpened(episode=ep) | EpisodeUpdated(episode=ep) | EpisodeClosed(episode=ep):
                row_id = self._episode(session, ep)
                if ep.ongoing:  # a closed episode may be updated late (an alert of its last windows)
                    self._current_episode = row_id
                elif self._current_episode == row_id:
                    self._current_episode = None
            case AlarmAcknowledged(alarm=alarm) if self._alarm_raised.get(alarm.id) != alarm.raised_time:
                # An alarm an earlier run left, acknowledged on a dashboard after that run stopped.
                if not acknowledge_earlier(session, self._bed, alarm):
                    _LOGGER.warning("alarm %d of %s raised %s, acknowledged by %s after its monitor stopped, is not in "
                                    "this log", alarm.id, self._bed, alarm.raised_time, alarm.acknowledged_by)
            case AlarmRaised(alarm=alarm) | AlarmAnnounced(alarm=alarm) | AlarmAcknowledged(alarm=alarm) | \
                    AlarmSilenced(alarm=alarm):
                self._alarm(session, alarm, envelope)
            case AlarmCleared(alarm=alarm, reason=reason):
                self._alarm(session, alarm, envelope).clear_reason = reason
            case ServiceStatus(state=state, detail=detail):
                session.add(ServiceEventRow(run_id=self._run, bed=self._bed, time=_parse(envelope.time),
                                            kind=state, detail=detail))
            case Heartbeat():
                pass  # live state only: everything in it is logged by the events above

    def _episode(self, session: Session, ep: EpisodeSummary) -> int:
        row = session.get(EpisodeRow, self._episode_ids[ep.number]) if ep.number in self._episode_ids else None
        if row is None:
            row = EpisodeRow(run_id=self._run, number=ep.number, bed=self._bed, source=self._source,
                             start=self._clock(ep.start_s), embedder_id=self._embedder_id, head=self._head)
            session.add(row)
        row.end = None if ep.end_s is None else self._clock(ep.end_s)
        row.label, row.probs, row.peak = ep.label, ep.probs, ep.peak
        row.windows, row.alerted = ep.windows, bool(ep.alarms)
        row.last, row.crying_s, row.bouts = self._clock(ep.last_s), ep.crying_s, ep.bouts
        row.voiced_s, row.high_pitch_s, row.f0_median_hz = ep.voiced_s, ep.high_pitch_s, ep.f0_median_hz
        row.evidence = ep.evidence
        session.flush()
        self._episode_ids[ep.number] = row.id
        return row.id

    def _alarm(self, session: Session, alarm: Alarm, envelope: Envelope) -> AlarmRow:
        row = session.get(AlarmRow, self._alarm_ids[alarm.id]) if alarm.id in self._alarm_ids else None
        if row is None:
            row = AlarmRow(run_id=self._run, alarm=alarm.id, bed=self._bed, label=alarm.label,
                           technical=alarm.technical, priority=alarm.priority.value, message=alarm.message,
                           raised=_parse(alarm.raised_time), probability=alarm.probability,
                           episode_id=self._episode_ids.get(alarm.episode) if alarm.episode is not None else None)
            session.add(row)
        row.announcements = alarm.announcements
        row.acknowledged_by = alarm.acknowledged_by
        row.acknowledged = _parse(alarm.acknowledged_time) if alarm.acknowledged_time else None
        if isinstance(envelope.event, AlarmSilenced):
            row.silenced = _parse(envelope.time)
        row.cleared = _parse(alarm.cleared_time) if alarm.cleared_time else None
        session.flush()
        self._alarm_ids[alarm.id] = row.id
        self._alarm_raised[alarm.id] = alarm.raised_time
        return row


def acknowledge_earlier(session: Session, bed: str, alarm: Alarm) -> bool:
    """Staff's acknowledgement (`alarm.acknowledged_by`, `acknowledged_time`) of an alarm a run of `bed` logged
    and cleared when it stopped: its row, found by its id in that run and when it was raised, gets it unless
    it was acknowledged before. False if this log has no such alarm."""
    row = session.scalars(select(AlarmRow).where(AlarmRow.bed == bed, AlarmRow.alarm == alarm.id,
                                                 AlarmRow.raised == _parse(alarm.raised_time))).first()
    if row is None:
        return False
    if row.acknowledged is None and alarm.acknowledged_time is not None:
        row.acknowledged, row.acknowledged_by = _parse(alarm.acknowledged_time), alarm.acknowledged_by
    return True


def acknowledge_in_log(url: str, bed: str, alarm: Alarm) -> str | None:
    """A dashboard's own way to `acknowledge_earlier`, where it can write the monitor's log: None once stored,
    else why not. A log that is not there is not created (a dashboard's default URL may name no log at all)."""
    shown = redact_url(url)
    try:
        engine = connect(url)
    except StoreError as exc:
        return str(exc)
    try:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        if engine.dialect.name == "sqlite" and not (database and Path(database).is_file()):
            return f"no log at {shown}"
        with Session(engine) as session, session.begin():
            if acknowledge_earlier(session, bed, alarm):
                return None
        return f"{shown} holds no alarm {alarm.id} of {bed} raised {alarm.raised_time}"
    except SQLAlchemyError as exc:
        return f"{shown}: {_refusal(exc)}"[:300]
    finally:
        engine.dispose()


class Spool:
    """What the database has not taken yet, in order, written as soon as it takes it again.

    A database that fails (disk full, locked, gone, or not there yet at start) must not stop live
    alerting: the service keeps its events here, up to `limit`; beyond it the oldest window rows go
    first (episodes and alarms are what staff review), and every event dropped is counted in `lost`.
    `open_log`, if given, runs (until it succeeds) before the first write: opening the log is then
    one more thing the database may refuse for a while.
    """

    BATCH = 256

    def __init__(self, writer: StoreWriter, limit: int = 50_000, open_log: Callable[[], None] | None = None):
        self._writer = writer
        self._limit = limit
        self._open_log = open_log
        self.pending: deque[Envelope] = deque()
        self.lost = 0
        self.failing: str | None = None  # the database's last refusal, while it refuses
        self.abandoned = False

    def offer(self, envelopes: list[Envelope]) -> None:
        self.pending.extend(envelopes)
        while len(self.pending) > self._limit:
            window = next((e for e in self.pending if isinstance(e.event, WindowScored)), None)
            if window is not None:
                self.pending.remove(window)
            else:
                self.pending.popleft()
            self.lost += 1

    def abandon(self) -> None:
        """The service stops and the database still refuses: nothing more is tried, so what waits is
        exactly what the log lost."""
        self.abandoned = True

    def flush(self) -> bool:
        """Writes what is pending, batch by batch; False (and `failing` set) if the database refused."""
        try:
            if self._open_log is not None and not self.abandoned:
                self._open_log()
                self._open_log = None
            while self.pending:
                if self.abandoned:
                    return False
                batch = [self.pending[i] for i in range(min(self.BATCH, len(self.pending)))]
                self._writer.write(batch)
                for _ in batch:
                    self.pending.popleft()
        except StoreError as exc:
            self.failing = str(exc)[:300]
            return False
        except (SQLAlchemyError, OSError) as exc:
            self.failing = _refusal(exc)
            return False
        self.failing = None
        return True


def _refusal(exc: Exception) -> str:
    """A database's refusal for the journal and the technical alarm: the driver's own words, no password, bounded."""
    return redact_url(f"{exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc}")[:300]


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


VERDICTS_OTHER = ("not_cry", "other")  # besides a confirmed cry type


class AnnotationRow(Base):
    """Staff's review of an episode; the latest row per episode is its review."""

    __tablename__ = "annotations"
    id: Mapped[int] = mapped_column(primary_key=True)
    episode_id: Mapped[int] = mapped_column(ForeignKey("episodes.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(32))  # a confirmed cry type, not_cry or other
    note: Mapped[str]
    by: Mapped[str] = mapped_column(String(16))
    time: Mapped[datetime]


@dataclass(frozen=True)
class EpisodeFilter:
    since: datetime | None = None  # episodes still open, or ending at or after this
    bed: str | None = None
    label: str | None = None  # the episode's type
    alarm: bool | None = None  # with (True) or without (False) an alarm
    unreviewed: bool = False


def list_episodes(engine: Engine, where: EpisodeFilter = EpisodeFilter()) -> list[dict[str, Any]]:
    """Episodes oldest first, each with its latest review (or None)."""
    query = select(EpisodeRow).order_by(EpisodeRow.start)
    if where.since is not None:
        # An episode still open, or one that ended after `since`, is of interest to a watcher.
        since = where.since
        query = query.where((EpisodeRow.end.is_(None)) | (EpisodeRow.end >= since) | (EpisodeRow.start >= since))
    if where.bed is not None:
        query = query.where(EpisodeRow.bed == where.bed)
    if where.label is not None:
        query = query.where(EpisodeRow.label == where.label)
    if where.alarm is not None:
        query = query.where(EpisodeRow.alerted.is_(where.alarm))
    if where.unreviewed:
        query = query.where(EpisodeRow.id.not_in(select(AnnotationRow.episode_id)))
    with Session(engine) as session:
        rows = session.scalars(query).all()
        reviews: dict[int, AnnotationRow] = {}
        for a in session.scalars(select(AnnotationRow).where(AnnotationRow.episode_id.in_([r.id for r in rows]))
                                 .order_by(AnnotationRow.id)):
            reviews[a.episode_id] = a  # the latest wins
        return [{
            "id": r.id, "bed": r.bed, "start": as_utc(r.start).isoformat(),
            "end": as_utc(r.end).isoformat() if r.end else None, "label": r.label, "probs": r.probs,
            "peak": r.peak, "windows": r.windows, "alert": r.alerted, "source": r.source,
            "length_s": _length_s(r), "crying_s": r.crying_s, "bouts": r.bouts, "f0_median_hz": r.f0_median_hz,
            "high_pitch_s": r.high_pitch_s, "evidence": r.evidence or {},
            "high_pitch_share": round(r.high_pitch_s / r.voiced_s, 3) if r.voiced_s > 0 else None,
            "embedder_id": r.embedder_id, "head": r.head, "run_id": r.run_id, "interrupted": r.interrupted,
            "review": _review(reviews.get(r.id)),
        } for r in rows]


def _length_s(row: EpisodeRow) -> float:
    """A spell's length: to its end once closed, to its newest cry frame while open."""
    end = row.end or row.last or row.start
    return round((as_utc(end) - as_utc(row.start)).total_seconds(), 1)


def _review(row: AnnotationRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"verdict": row.verdict, "note": row.note, "by": row.by, "time": as_utc(row.time).isoformat()}


def annotate(engine: Engine, episode_id: int, verdict: str, by: str, note: str = "",
             when: datetime | None = None) -> dict[str, Any]:
    """Stores staff's review of an episode; refuses an unknown episode or verdict (StoreError)."""
    with Session(engine) as session, session.begin():
        episode = session.get(EpisodeRow, episode_id)
        if episode is None:
            raise StoreError(f"no episode {episode_id} in this log: see `crywatch episodes`")
        types = [c for c in episode.probs if c != "not_cry"]
        if verdict not in (*types, *VERDICTS_OTHER):
            raise StoreError(f"verdict {verdict!r} for episode {episode_id}: use one of "
                             f"{', '.join((*types, *VERDICTS_OTHER))}")
        row = AnnotationRow(episode_id=episode_id, verdict=verdict, note=note, by=by,
                            time=when or datetime.now(timezone.utc))
        session.add(row)
        session.flush()
        return _review(row) or {}


def episode_windows(engine: Engine, episode_id: int) -> list[dict[str, Any]]:
    """The episode's stored windows (with `[store] log_windows`), oldest first: its timeline."""
    with Session(engine) as session:
        rows = session.scalars(select(WindowRow).where(WindowRow.episode_id == episode_id).order_by(WindowRow.start))
        return [{"start": as_utc(w.start).isoformat(), "activity": w.activity, "level_dbfs": w.level_dbfs,
                 "smoothed": w.smoothed, "raw": w.raw} for w in rows]


def close_interrupted(engine: Engine, bed: str, now: datetime) -> tuple[int, int]:
    """Episodes and alarms of `bed` that an earlier run left open (it was killed, or the PC lost
    power) are closed: an episode ends at its last logged window (or its start) and is marked
    interrupted, an alarm is cleared now with that reason. Returns (episodes, alarms) closed."""
    reason = "interrupted: the monitor stopped without closing it"
    with Session(engine) as session, session.begin():
        episodes = session.scalars(select(EpisodeRow).where(EpisodeRow.bed == bed, EpisodeRow.end.is_(None))).all()
        for episode in episodes:
            last = session.scalars(select(WindowRow.start).where(WindowRow.episode_id == episode.id)
                                   .order_by(WindowRow.start.desc()).limit(1)).first()
            episode.end, episode.interrupted = last or episode.start, True
        alarms = session.scalars(select(AlarmRow).where(AlarmRow.bed == bed, AlarmRow.cleared.is_(None))).all()
        for alarm in alarms:
            alarm.cleared, alarm.clear_reason = now, reason
        return len(episodes), len(alarms)


def monitored_seconds(engine: Engine) -> float:
    """Time the monitors were running, from each run's first to last logged moment (a run that
    crashed ends at its last window or episode)."""
    with Session(engine) as session:
        return sum((last - first).total_seconds() for first, last in run_extents(session).values())


def run_extents(session: Session, bed: str | None = None) -> dict[tuple[str, str], tuple[datetime, datetime]]:
    """Each run's first and last logged moment, by (bed, run id), of every bed or one: the database finds
    each table's first and last moment per run."""
    moments: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for run_id, bed_column, moment in (ServiceEventRow.run_id, ServiceEventRow.bed, ServiceEventRow.time), \
            (WindowRow.run_id, WindowRow.bed, WindowRow.start), (EpisodeRow.run_id, EpisodeRow.bed, EpisodeRow.end):
        query = (select(run_id, bed_column, func.min(moment), func.max(moment)).where(moment.is_not(None))
                 .group_by(run_id, bed_column))
        if bed is not None:
            query = query.where(bed_column == bed)
        for run, bed_name, first, last in session.execute(query):
            moments[(bed_name, run)].extend(as_utc(m) for m in (first, last) if m is not None)
    return {key: (min(seen), max(seen)) for key, seen in moments.items()}


def episode_embeddings(engine: Engine, episode_id: int, embedder_id: str) -> np.ndarray:
    """The stored embeddings of an episode's windows from `embedder_id`, (n, dim); (0, 0) if none."""
    with Session(engine) as session:
        rows = session.scalars(select(WindowEmbeddingRow.vector).join(WindowRow, WindowRow.id == WindowEmbeddingRow.window_id)
                               .where(WindowRow.episode_id == episode_id, WindowEmbeddingRow.embedder_id == embedder_id)
                               .order_by(WindowRow.start)).all()
    return np.stack([np.frombuffer(v, "<f4") for v in rows]) if rows else np.zeros((0, 0), np.float32)
