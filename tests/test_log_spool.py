"""Monitoring starts without its log: a database that cannot be opened at start is the technical
alarm log_failing and an in-memory spool, not exit 2; the log catches up when the database returns,
and the stop status counts what it never got. Real SQLite files, a real PostgreSQL server."""
import socket
import sqlite3
import uuid

import pytest
from sqlalchemy import create_engine, text

from monitor.messages import AlarmRaised, EpisodeClosed, Heartbeat, ServiceStatus, WindowScored
from monitor.service import Service
from monitor.store import list_episodes, open_engine
from tests.conftest import free_endpoint, run_crywatch


def _service(settings, models, url: str, scenario: str, on_message) -> Service:
    return Service(settings.with_overrides(
        audio={"input": f"scenario:{scenario}", "speed": 0.0}, store={"url": url, "log_embeddings": False},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-spool"}), models=models, on_message=on_message)


class _Repair:
    """Records what the service publishes, and runs `fix` once when log_failing is raised (the operator)."""

    def __init__(self, fix=None):
        self.events: list = []
        self._fix = fix

    def __call__(self, envelope):
        self.events.append(envelope.event)
        if isinstance(envelope.event, AlarmRaised) and envelope.event.alarm.label == "log_failing" and self._fix:
            self._fix()
            self._fix = None

    def alarms(self, technical: bool) -> list:
        return [e.alarm for e in self.events if isinstance(e, AlarmRaised) and e.alarm.technical == technical]

    def stopped(self) -> dict:
        [status] = [e for e in self.events if isinstance(e, ServiceStatus) and e.state == "stopped"]
        return status.detail


def test_a_log_folder_missing_at_start_is_an_alarm_and_the_log_catches_up_when_it_appears(settings, models, tmp_path):
    folder = tmp_path / "not-yet"
    seen = _Repair(fix=folder.mkdir)
    summary = _service(settings, models, f"sqlite:///{folder / 'log.db'}", "nicu", seen).run()

    assert summary.failed is None and summary.episodes  # the bed was watched all along
    [failing] = seen.alarms(technical=True)
    assert failing.label == "log_failing" and "unable to open database file" in failing.message
    closed = [e.episode for e in seen.events if isinstance(e, EpisodeClosed)]
    gated = sum(isinstance(e, WindowScored) and e.gated for e in seen.events)
    assert seen.stopped()["log_events_lost"] == 0
    with sqlite3.connect(folder / "log.db") as db:  # what was spooled before the folder existed is there too
        assert [k for (k,) in db.execute("select kind from service_events order by id")] == ["started", "stopped"]
        assert db.execute("select count(*) from windows").fetchone()[0] == gated > 0
        assert "log_failing" in {label for (label,) in db.execute("select label from alarms")}
        assert db.execute("select count(*) from alarms where cleared is null").fetchone()[0] == 0
    stored = list_episodes(open_engine(f"sqlite:///{folder / 'log.db'}"))
    assert [(e["label"], e["end"] is not None) for e in stored] == [(e.label, True) for e in closed]


def test_events_a_log_never_takes_are_counted_as_lost_in_the_stop_status(settings, models, tmp_path):
    seen = _Repair()
    summary = _service(settings, models, f"sqlite:///{tmp_path / 'never' / 'log.db'}", "quiet", seen).run()
    assert summary.failed is None and [a.label for a in seen.alarms(technical=True)] == ["log_failing"]
    stored = [e for e in seen.events if not isinstance(e, Heartbeat)]  # everything else is written to the log
    assert seen.stopped()["log_events_lost"] == len(stored) > 60  # was 0: the stop status counted only overflow


def test_a_postgresql_database_created_after_the_start_gets_the_spooled_episodes(settings, models, postgres_url):
    name = f"late_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")

    def create_database():
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))

    url = f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    seen = _Repair(fix=create_database)
    summary = _service(settings, models, url, "nicu", seen).run()
    admin.dispose()
    assert summary.failed is None
    [failing] = seen.alarms(technical=True)
    assert failing.label == "log_failing" and f'database "{name}" does not exist' in failing.message
    closed = [e.episode.number for e in seen.events if isinstance(e, EpisodeClosed)]
    engine = open_engine(url)
    assert len(list_episodes(engine)) == len(closed) > 0 and seen.stopped()["log_events_lost"] == 0
    engine.dispose()


def test_crywatch_run_with_its_postgresql_server_down_watches_the_bed_instead_of_exiting(tmp_path):
    pytest.importorskip("psycopg", reason="needs psycopg (pip install -e '.[dev]')")
    with socket.socket() as s:  # a port nothing listens on: the server is down
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_crywatch("run", "--headless", "--input", "scenario:quiet", "--speed", "0", "--bus", free_endpoint(),
                          "--db", f"postgresql+psycopg://nurse:s3cret@127.0.0.1:{port}/crywatch", timeout=120)
    assert result.returncode == 0, result.stderr  # was 2: "cannot open database", and the bed unwatched
    assert "] LOG NOT WRITING: events are kept in memory" in result.stdout and "Connection refused" in result.stdout
    [stopped] = [line for line in result.stdout.splitlines() if " stopped (" in line]
    assert int(stopped.split("log_events_lost=")[1].rstrip(")").split(",")[0]) > 0
    assert "s3cret" not in result.stdout + result.stderr
