"""The review log on a real SQLite file, fed typed events as the service hands them over."""
import sqlite3
import subprocess
import sys
import threading
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect, text

from monitor.bus import Envelope
from monitor.config import BED_MAX_LENGTH, LABEL_MAX_LENGTH, PROJECT_ROOT
from monitor.messages import (
    Alarm,
    AlarmAcknowledged,
    AlarmCleared,
    AlarmRaised,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeSummary,
    EpisodeUpdated,
    Priority,
    ServiceStatus,
    SpellAlarm,
    WindowScored,
)
from monitor.store import (
    EpisodeFilter,
    Spool,
    StoreError,
    StoreWriter,
    annotate,
    connect,
    episode_windows,
    list_episodes,
    open_engine,
    prepare,
    redact_url,
    utc,
)
from monitor.store.database import MIGRATIONS, Base
from tests.conftest import run_crywatch
from train.heads.site import evaluate_site

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def _at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


def _envelope(event) -> Envelope:
    return Envelope("bed-7", _at(event.time / 16000), event)


def _episode(end_s, alerts=()) -> EpisodeSummary:
    return EpisodeSummary(1, 2.0, end_s, end_s or 6.0, 2.4, "pain", {"not_cry": 0.2, "pain": 0.7},
                          {"not_cry": 0.4, "pain": 0.9}, 3, alarms=tuple(SpellAlarm(kind, 4.0) for kind in alerts))


def _window(start_s: float, gated: bool) -> WindowScored:
    return WindowScored(int((start_s + 2) * 16000), start_s, -20.0 if gated else -50.0, 0.6 if gated else 0.0, gated,
                        {"pain": 0.8} if gated else None, {"pain": 0.7}, 0.7, ())


ALARM = Alarm(1, "pain", False, Priority.HIGH, "PAIN CRY", _at(5), True, True, episode=1, probability=0.81)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "log.db"
    engine = open_engine(f"sqlite:///{path}")
    writer = StoreWriter(engine, "run-1", "bed-7", "microphone 'test'", "acoustic-v1", "head-a",
                         lambda s: T0 + timedelta(seconds=s))
    return path, engine, writer


def test_open_episode_is_visible_at_once_with_no_end(db):
    path, engine, writer = db
    writer.write([_envelope(EpisodeOpened(38_400, _episode(None)))])
    [ep] = list_episodes(engine)
    assert ep["end"] is None and ep["start"] == "2026-11-27T08:00:02+00:00" and ep["label"] == "pain"
    # another process (the review command) sees it too, while the writer's engine is open
    with sqlite3.connect(path) as other:
        assert other.execute("select count(*) from episodes where end is null").fetchone() == (1,)
        assert other.execute("pragma journal_mode").fetchone() == ("wal",)


def test_episodes_alarms_windows_and_service_states_land_in_their_tables(db):
    path, engine, writer = db
    writer.write([_envelope(e) for e in (
        ServiceStatus(0, "started", {"source": "mic"}),
        EpisodeOpened(38_400, _episode(None)),
        _window(2.0, gated=True),
        _window(3.0, gated=False),
        AlarmRaised(80_000, ALARM),
    )])
    acknowledged = replace(ALARM, acknowledged_by="AB", acknowledged_time=_at(7))
    writer.write([_envelope(AlarmAcknowledged(112_000, acknowledged)),
                  _envelope(EpisodeClosed(96_000, _episode(6.0, ("pain",)))),
                  _envelope(AlarmCleared(144_000, replace(acknowledged, cleared_time=_at(9)), "below threshold"))])
    [ep] = list_episodes(engine)
    assert ep["end"] == "2026-11-27T08:00:06+00:00" and ep["alert"] is True
    with sqlite3.connect(path) as conn:
        assert conn.execute("select count(*) from windows").fetchone() == (1,)  # ungated windows are not logged
        assert conn.execute("select episode_id from windows").fetchone() == (ep["id"],)
        row = conn.execute("select label, priority, technical, raised, acknowledged, acknowledged_by, cleared, "
                           "clear_reason, episode_id, probability from alarms").fetchone()
        assert row[:3] == ("pain", "high", 0)
        assert row[3].startswith("2026-11-27 08:00:05") and row[4].startswith("2026-11-27 08:00:07")
        assert row[5] == "AB" and row[6].startswith("2026-11-27 08:00:09")
        assert row[7:] == ("below threshold", ep["id"], 0.81)
        assert conn.execute("select kind from service_events").fetchall() == [("started",)]


def test_since_keeps_open_and_later_episodes(db):
    _path, engine, writer = db
    writer.write([_envelope(EpisodeOpened(38_400, _episode(None)))])
    assert len(list_episodes(engine, EpisodeFilter(since=T0 + timedelta(hours=5)))) == 1  # still open
    writer.write([_envelope(EpisodeClosed(96_000, _episode(6.0)))])
    assert list_episodes(engine, EpisodeFilter(since=T0 + timedelta(hours=5))) == []
    assert len(list_episodes(engine, EpisodeFilter(since=T0))) == 1
    assert list_episodes(engine, EpisodeFilter(bed="bed-1")) == []


def test_unusable_database_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not usable"):
        open_engine("nosuchdb://x")
    with pytest.raises(StoreError, match="cannot open database .*writable"):
        open_engine(f"sqlite:///{tmp_path}/missing/dir/log.db")


def test_utc_is_timezone_aware():
    assert utc(0).tzinfo is not None


def test_reviews_are_stored_filtered_on_and_refused_when_wrong(db):
    _path, engine, writer = db
    writer.write([_envelope(EpisodeOpened(38_400, _episode(None))), _envelope(_window(2.0, gated=True)),
                  _envelope(EpisodeClosed(96_000, _episode(6.0, ("pain",))))])
    [ep] = list_episodes(engine, EpisodeFilter(unreviewed=True))
    assert ep["review"] is None and list_episodes(engine, EpisodeFilter(label="hunger")) == []
    assert len(list_episodes(engine, EpisodeFilter(alarm=True))) == 1 and list_episodes(engine, EpisodeFilter(alarm=False)) == []
    with pytest.raises(StoreError, match="verdict 'painful' for episode 1: use one of pain, not_cry, other"):
        annotate(engine, ep["id"], "painful", "AB")
    with pytest.raises(StoreError, match="no episode 99"):
        annotate(engine, 99, "pain", "AB")
    annotate(engine, ep["id"], "other", "AB", "colleague's phone", when=T0 + timedelta(hours=1))
    annotate(engine, ep["id"], "pain", "CD", "heel prick at 08:00", when=T0 + timedelta(hours=2))
    [reviewed] = list_episodes(engine)
    assert reviewed["review"] == {"verdict": "pain", "note": "heel prick at 08:00", "by": "CD",
                                  "time": "2026-11-27T10:00:00+00:00"}  # the latest review wins
    assert list_episodes(engine, EpisodeFilter(unreviewed=True)) == []
    [window] = episode_windows(engine, ep["id"])
    assert window["smoothed"] == {"pain": 0.7} and window["activity"] == 0.6


def test_evaluate_site_reports_on_reviewed_episodes_only(db, tmp_path):
    from train.cli import main

    path, engine, writer = db
    probs = {"not_cry": 0.2, "pain": 0.5, "hunger": 0.3}
    pain = replace(_episode(6.0, ("pain",)), probs=probs)
    hunger = replace(pain, number=2, start_s=12.0, end_s=16.0, label="hunger", alarms=())
    writer.write([_envelope(ServiceStatus(0, "started")),
                  _envelope(EpisodeClosed(96_000, pain)),
                  _envelope(EpisodeClosed(256_000, hunger)),
                  _envelope(EpisodeClosed(320_000, replace(pain, number=3, start_s=18.0, end_s=20.0, alarms=()))),
                  _envelope(ServiceStatus(3600 * 16_000, "stopped"))])
    first, second, third = (e["id"] for e in list_episodes(engine))
    annotate(engine, first, "pain", "AB")
    annotate(engine, second, "not_cry", "AB", "kettle")
    annotate(engine, third, "hunger", "AB")
    result = evaluate_site(engine)
    assert (result["episodes"], result["reviewed"], result["monitored_hours"]) == (3, 3, 1.0)
    assert result["confusion"]["counts"] == {"hunger": {"hunger": 0, "pain": 1}, "not_cry": {"hunger": 1, "pain": 0},
                                             "pain": {"hunger": 0, "pain": 1}}
    assert result["precision_by_type"]["pain"] == {"reviewed": 2, "confirmed": 1, "precision": 0.5}
    assert result["false_episodes_per_monitored_hour"] == 1.0 and result["alarmed_episodes_confirmed_cry"] == 1.0
    assert main(["evaluate-site", "--db", f"sqlite:///{path}"]) == 0


def test_a_late_alert_marks_the_closed_episode_and_windows_stay_with_the_open_one(db):
    path, engine, writer = db
    second = replace(_episode(None), number=2, start_s=12.0)
    writer.write([_envelope(e) for e in (
        EpisodeOpened(38_400, _episode(None)),
        EpisodeClosed(96_000, _episode(6.0)),
        EpisodeOpened(200_000, second),
        EpisodeUpdated(210_000, _episode(6.0, ("pain",))),  # episode 1's last window alerted late
        _window(12.5, gated=True),
    )])
    first, current = list_episodes(engine)
    assert first["alert"] is True and first["end"] is not None and current["end"] is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("select episode_id from windows").fetchall() == [(current["id"],)]


def test_a_database_password_is_never_shown():
    with pytest.raises(StoreError) as refused:
        open_engine("nosuchdb://nurse:s3cret@db.example/crywatch")
    assert "s3cret" not in str(refused.value) and "nurse:***@db.example" in str(refused.value)


def test_a_new_log_is_readable_by_its_owner_only(tmp_path):
    open_engine(f"sqlite:///{tmp_path / 'private.db'}").dispose()
    assert (tmp_path / "private.db").stat().st_mode & 0o777 == 0o600


def test_a_read_only_log_is_refused_at_start_not_at_the_first_episode(tmp_path):
    open_engine(f"sqlite:///{tmp_path / 'log.db'}").dispose()
    with pytest.raises(StoreError, match="readonly"):
        open_engine(f"sqlite:///file:{tmp_path / 'log.db'}?mode=ro&uri=true")


def test_a_password_given_as_a_query_parameter_is_never_shown_either():
    assert redact_url("postgresql+psycopg://nurse@db/crywatch?sslmode=require&password=s3cret") == \
        "postgresql+psycopg://nurse@db/crywatch?sslmode=require&password=***"
    assert "s3cret" not in redact_url("connection failed: host=db password=s3cret user=nurse")


def test_the_config_limits_are_the_log_schema_s_column_lengths(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'log.db'}")  # the tables as the migrations made them
    columns = {table: {c["name"]: c["type"] for c in inspect(engine).get_columns(table)}
               for table in ("episodes", "windows", "alarms", "service_events")}
    assert {table: cols["bed"].length for table, cols in columns.items()} == dict.fromkeys(columns, BED_MAX_LENGTH)
    assert columns["alarms"]["label"].length == columns["episodes"]["label"].length == LABEL_MAX_LENGTH


def test_the_spool_opens_a_log_that_is_not_there_yet_once_it_appears_and_writes_in_order(tmp_path):
    folder = tmp_path / "later"
    engine = connect(f"sqlite:///{folder / 'log.db'}")  # no error yet: nothing is opened
    opened = []

    def open_log():
        prepare(engine)
        opened.append(True)

    writer = StoreWriter(engine, "run-1", "bed-7", "mic", "acoustic-v2", "head-a", lambda s: T0 + timedelta(seconds=s))
    spool = Spool(writer, open_log=open_log)
    spool.offer([_envelope(ServiceStatus(0, "started")), _envelope(EpisodeOpened(38_400, _episode(None)))])
    assert spool.flush() is False and "unable to open database file" in spool.failing and not opened
    folder.mkdir()
    spool.offer([_envelope(EpisodeClosed(96_000, _episode(6.0)))])
    assert spool.flush() is True and spool.failing is None and opened == [True] and not spool.pending
    [episode] = list_episodes(engine)
    assert episode["end"] == "2026-11-27T08:00:06+00:00"
    assert (folder / "log.db").stat().st_mode & 0o777 == 0o600  # private, also when created late
    spool.offer([_envelope(ServiceStatus(3200, "stopped"))])
    spool.abandon()  # given up on: nothing more is written, so what waits is what was lost
    assert spool.flush() is False and len(spool.pending) == 1


def _at_head(url: str) -> bool:
    """The log at `url` holds exactly the models' schema, stamped with the newest migration."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = connect(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            return (context.get_current_revision() == ScriptDirectory.from_config(config).get_current_head()
                    and compare_metadata(context, Base.metadata) == [])
    finally:
        engine.dispose()


_OPEN_WHEN_TOLD = """
import sys
from monitor.store import connect, prepare
engine = connect(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
prepare(engine)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def new_log_url(request, tmp_path) -> str:
    """A log nothing has opened yet: a SQLite file, or a new database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    server = request.getfixturevalue("postgres_url")
    name = f"shared_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    admin.dispose()
    return f"{server.rsplit('/', 1)[0]}/{name}"


def test_monitors_sharing_a_new_log_and_started_together_both_open_it(new_log_url):
    """Two processes (two beds' services sharing one log) migrate one new log at the same moment."""
    url = new_log_url
    monitors = [subprocess.Popen([sys.executable, "-c", _OPEN_WHEN_TOLD, url], cwd=PROJECT_ROOT, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    try:
        for monitor in monitors:
            assert monitor.stdout is not None and monitor.stdout.readline() == "ready\n"
        for monitor in monitors:  # both go at once
            assert monitor.stdin is not None
            monitor.stdin.write("go\n")
            monitor.stdin.flush()
        errors = [monitor.communicate(timeout=60)[1] for monitor in monitors]
    finally:
        for monitor in monitors:
            monitor.kill()
    assert [monitor.returncode for monitor in monitors] == [0, 0], errors  # was "table episodes already exists"
    assert _at_head(url)


def test_a_migration_waits_longer_than_a_write_for_another_monitors_migration(tmp_path, monkeypatch):
    """A monitor migrating a shared new log holds its write lock throughout; on a loaded machine that outlasted
    the 5 s an ordinary write waits, and the second monitor's log failed to open ("database is locked")."""
    import monitor.store.database as store

    monkeypatch.setattr(store, "_BUSY_TIMEOUT_MS", 100)  # an ordinary write now gives up after 0.1 s
    path = tmp_path / "shared.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")  # as the first monitor's connection left it
    holder.execute("BEGIN IMMEDIATE")
    failures: list[BaseException] = []

    def second_monitor() -> None:
        try:
            prepare(connect(f"sqlite:///{path}"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    opener = threading.Thread(target=second_monitor)
    opener.start()
    opener.join(1.0)  # the first monitor's migration lasts 1 s, ten times the ordinary wait
    holder.execute("COMMIT")
    holder.close()
    opener.join(30)
    assert not opener.is_alive() and failures == []
    assert _at_head(f"sqlite:///{path}")


@pytest.mark.parametrize("files", [("a.db", "b.db"), ("shared.db", "shared.db")], ids=["own logs", "one log"])
def test_two_services_in_one_process_open_their_new_logs_at_the_same_time(tmp_path, files):
    """Each service's store thread opens its log: two at once used to run Alembic's migrations into each other."""
    engines = [connect(f"sqlite:///{tmp_path / name}") for name in files]
    start, errors = threading.Barrier(len(engines)), []

    def open_log(engine) -> None:
        start.wait()
        try:
            prepare(engine)
        except Exception as exc:  # noqa: BLE001 - every failure is the test's finding
            errors.append(exc)

    threads = [threading.Thread(target=open_log, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for engine in engines:
        engine.dispose()
    assert errors == []  # was "index ix_episodes_bed already exists", "no such table: alarms", KeyError 'config'
    assert all(_at_head(f"sqlite:///{tmp_path / name}") for name in set(files))


def test_a_disk_that_fills_while_the_log_is_created_leaves_nothing_half_made_and_the_log_opens_once_there_is_room(
        tmp_path):
    full = tmp_path / "full.db"
    open_engine(f"sqlite:///{tmp_path / 'sized.db'}").dispose()
    with sqlite3.connect(tmp_path / "sized.db") as conn:
        [(pages,)] = conn.execute("PRAGMA page_count").fetchall()
    engine = connect(f"sqlite:///{full}")
    # A real SQLITE_FULL halfway through the migrations: room for half the pages a new log needs.
    event.listen(engine, "connect", lambda connection, _record: connection.execute(f"PRAGMA max_page_count={pages // 2}"))
    spool = Spool(StoreWriter(engine, "run-1", "bed-7", "mic", "acoustic-v2", "head-a", utc), open_log=lambda: prepare(engine))
    spool.offer([_envelope(ServiceStatus(0, "started"))])
    assert spool.flush() is False and "database or disk is full" in (spool.failing or "")  # the service's log_failing
    engine.dispose()
    with sqlite3.connect(full) as conn:  # no half-made schema, which every later try failed on ("no such table")
        assert conn.execute("select name from sqlite_master").fetchall() == []
    roomy = connect(f"sqlite:///{full}")
    spool = Spool(StoreWriter(roomy, "run-1", "bed-7", "mic", "acoustic-v2", "head-a", utc), open_log=lambda: prepare(roomy))
    spool.offer([_envelope(ServiceStatus(0, "started"))])
    assert spool.flush() is True and spool.failing is None
    roomy.dispose()
    assert _at_head(f"sqlite:///{full}")


def test_the_client_keys_passphrase_given_as_sslpassword_is_never_shown():
    """The fault: `?sslpassword=` (libpq's passphrase for the client key) was printed as it was."""
    url = "postgresql+psycopg://nurse@127.0.0.1:1/crywatch?sslmode=disable&sslpassword=s3cret"
    assert redact_url(url) == "postgresql+psycopg://nurse@127.0.0.1:1/crywatch?sslmode=disable&sslpassword=***"
    pytest.importorskip("psycopg", reason="needs psycopg (pip install -e '.[dev]')")
    result = run_crywatch("episodes", "--db", url)  # nobody listens on port 1: the error quotes the URL
    assert result.returncode == 2 and "sslpassword=***" in result.stderr, result.stderr
    assert "s3cret" not in result.stderr + result.stdout
