"""The review log: SQLAlchemy 2.0 models and the writer that turns events into rows.

SQLite in WAL mode by default (readers such as `crywatch episodes` never block the writer);
any SQLAlchemy URL works. An episode row is written when the episode opens, with end NULL,
so a watcher sees it at once.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import JSON, DateTime, ForeignKey, String, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class StoreError(RuntimeError):
    """The log cannot be opened or written; the message names the URL and the fix."""


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class EpisodeRow(Base):
    __tablename__ = "episodes"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    number: Mapped[int]  # episode number within the run
    bed: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str]
    start: Mapped[datetime] = mapped_column(index=True)
    end: Mapped[datetime | None]
    label: Mapped[str] = mapped_column(String(32))
    probs: Mapped[dict[str, Any]]
    peak: Mapped[dict[str, Any]]
    windows: Mapped[int]
    alerted: Mapped[bool]
    embedder_id: Mapped[str]
    head: Mapped[str]


class WindowRow(Base):
    __tablename__ = "windows"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    bed: Mapped[str] = mapped_column(String(64))
    start: Mapped[datetime] = mapped_column(index=True)
    level_dbfs: Mapped[float]
    activity: Mapped[float]
    raw: Mapped[dict[str, Any]]
    smoothed: Mapped[dict[str, Any]]
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id"))


class AlertRow(Base):
    __tablename__ = "alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    bed: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(32))
    raised: Mapped[datetime] = mapped_column(index=True)
    cleared: Mapped[datetime | None]
    probability: Mapped[float]
    episode_id: Mapped[int | None] = mapped_column(ForeignKey("episodes.id"))


class ServiceEventRow(Base):
    __tablename__ = "service_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    bed: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(index=True)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]]


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the bedside writer
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint, cheap commits
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_engine(url: str) -> Engine:
    try:
        engine = create_engine(url)
    except (ArgumentError, ImportError, ValueError) as exc:
        raise StoreError(f"database URL {url!r} is not usable ({exc}): use e.g. sqlite:///crywatch.db") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        Base.metadata.create_all(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open database {url!r} ({exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}): "
                         "check the path exists and is writable") from exc
    return engine


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _as_utc(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class StoreWriter:
    """Applies pipeline events to the database. Call from one thread only."""

    def __init__(self, engine: Engine, run_id: str, bed: str, source: str, embedder_id: str, head: str,
                 clock: Callable[[float], datetime], log_windows: bool = True):
        self._engine = engine
        self._run, self._bed, self._source = run_id, bed, source
        self._embedder_id, self._head = embedder_id, head
        self._clock = clock  # stream seconds → wall-clock UTC
        self._log_windows = log_windows
        self._episode_ids: dict[int, int] = {}
        self._open_alerts: dict[str, int] = {}
        self._current_episode: int | None = None

    def write(self, events: list[dict[str, Any]]) -> None:
        """One transaction per batch: what was handed over is either all stored or raises."""
        with Session(self._engine) as session, session.begin():
            for message in events:
                self._apply(session, message)

    def _apply(self, session: Session, message: dict[str, Any]) -> None:
        kind, data, t = message["type"], message["data"], message["t"]
        if kind == "window":
            if self._log_windows and data["gated"]:
                session.add(WindowRow(run_id=self._run, bed=self._bed, start=self._clock(data["start_s"]),
                                      level_dbfs=data["level_dbfs"], activity=data["activity"], raw=data["raw"],
                                      smoothed=data["smoothed"], episode_id=self._current_episode))
        elif kind in ("episode_opened", "episode_updated", "episode_closed"):
            self._episode(session, kind, data)
        elif kind == "alert_raised":
            row = AlertRow(run_id=self._run, bed=self._bed, label=data["label"], raised=self._clock(t),
                           probability=data["probability"], episode_id=self._episode_ids.get(data.get("episode")))
            session.add(row)
            session.flush()
            self._open_alerts[data["label"]] = row.id
        elif kind == "alert_cleared":
            alert_id = self._open_alerts.pop(data["label"], None)
            if alert_id is not None:
                alert = session.get(AlertRow, alert_id)
                assert alert is not None, f"alert {alert_id} was added by this writer"  # for mypy: get() is Optional
                alert.cleared = self._clock(t)
        else:  # health: the state change is the kind worth querying by
            detail = {k: v for k, v in data.items() if k != "state"}
            session.add(ServiceEventRow(run_id=self._run, bed=self._bed, time=self._clock(t),
                                        kind=data.get("state", kind), detail=detail))

    def _episode(self, session: Session, kind: str, data: dict[str, Any]) -> None:
        number = data["episode"]
        row = session.get(EpisodeRow, self._episode_ids[number]) if number in self._episode_ids else None
        if row is None:
            row = EpisodeRow(run_id=self._run, number=number, bed=self._bed, source=self._source,
                             start=self._clock(data["start_s"]), embedder_id=self._embedder_id, head=self._head)
            session.add(row)
        row.end = None if data["end_s"] is None else self._clock(data["end_s"])
        row.label, row.probs, row.peak = data["label"], data["probs"], data["peak"]
        row.windows, row.alerted = data["windows"], data["alert"]
        session.flush()
        self._episode_ids[number] = row.id
        self._current_episode = None if kind == "episode_closed" else row.id


def list_episodes(engine: Engine, since: datetime | None = None, bed: str | None = None) -> list[dict[str, Any]]:
    query = select(EpisodeRow).order_by(EpisodeRow.start)
    if since is not None:
        # An episode still open, or one that ended after `since`, is of interest to a watcher.
        query = query.where((EpisodeRow.end.is_(None)) | (EpisodeRow.end >= since) | (EpisodeRow.start >= since))
    if bed is not None:
        query = query.where(EpisodeRow.bed == bed)
    with Session(engine) as session:
        rows = session.scalars(query).all()
        return [{
            "id": r.id, "bed": r.bed, "start": _as_utc(r.start).isoformat(),
            "end": _as_utc(r.end).isoformat() if r.end else None, "label": r.label, "probs": r.probs,
            "peak": r.peak, "windows": r.windows, "alert": r.alerted, "source": r.source,
            "embedder_id": r.embedder_id, "head": r.head, "run_id": r.run_id,
        } for r in rows]
