"""The log's schema can change: Alembic migrations create it, and upgrade a log an older CryWatch wrote."""
import logging
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from monitor.messages import EpisodeOpened
from monitor.store import StoreError, StoreWriter, list_episodes, monitored_seconds, open_engine, utc
from monitor.store.database import Base
from tests.test_store import _envelope, _episode

SCHEMA_1 = Path(__file__).parent / "data" / "log-schema1.sql"  # `sqlite3 .dump` of a log made by CryWatch before 0002


def test_a_new_log_built_by_the_migrations_is_exactly_the_models(tmp_path):
    engine = open_engine(f"sqlite:///{tmp_path / 'new.db'}")
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert MigrationContext.configure(connection).get_current_revision() == "0005"


def test_a_log_written_by_the_previous_crywatch_is_upgraded_not_refused(tmp_path, caplog):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA_1.read_text())
    with caplog.at_level(logging.WARNING, logger="monitor.store"):
        engine = open_engine(f"sqlite:///{path}")
    assert "upgraded from schema 0001 to 0005" in caplog.text
    [old] = list_episodes(engine)
    assert (old["bed"], old["label"], old["alert"], old["review"]) == ("bed-3", "pain", True, None)
    assert (old["crying_s"], old["bouts"], old["f0_median_hz"], old["evidence"]) == (0.0, 0, None, {})  # never measured
    assert monitored_seconds(engine) == 10.0
    with sqlite3.connect(path) as conn:
        alarm = conn.execute("select label, priority, technical, message, cleared is not null, episode_id, alarm "
                             "from alarms").fetchall()
        assert alarm == [("pain", "high", 0, "PAIN CRY", 1, old["id"], 1)]  # the old alert, carried over
        assert "alerts" not in {t for (t,) in conn.execute("select name from sqlite_master where type = 'table'")}
        assert conn.execute("select kind from service_events order by id").fetchall() == [("started",), ("stopped",)]
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    StoreWriter(engine, "run-new", "bed-3", "mic", "acoustic-v2", "head", utc).write(
        [_envelope(EpisodeOpened(0, _episode(None)))])
    assert len(list_episodes(engine)) == 2
    engine.dispose()
    assert open_engine(f"sqlite:///{path}")  # already current: opens without another upgrade


def test_a_log_from_a_newer_crywatch_is_refused_by_name(tmp_path):
    path = tmp_path / "future.db"
    open_engine(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("update alembic_version set version_num = '0099'")
    with pytest.raises(StoreError, match="written by a newer CryWatch .log schema 0099, this one knows up to 0005"):
        open_engine(f"sqlite:///{path}")
