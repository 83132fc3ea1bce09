import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from monitor.store import StoreError, StoreWriter, list_episodes, open_engine, utc

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def _message(kind, t, **data):
    return {"v": 1, "type": kind, "bed": "bed-7", "time": "", "t": t, "data": data}


def _episode(kind, end_s, alert=False):
    return _message(kind, end_s or 6.0, episode=1, start_s=2.0, end_s=end_s, label="pain",
                    probs={"not_cry": 0.2, "pain": 0.7}, peak={"not_cry": 0.4, "pain": 0.9}, windows=3,
                    alert=alert, alerts=["pain"] if alert else [])


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "log.db"
    engine = open_engine(f"sqlite:///{path}")
    writer = StoreWriter(engine, "run-1", "bed-7", "microphone 'test'", "acoustic-v1", "head-a",
                         lambda s: T0 + timedelta(seconds=s))
    return path, engine, writer


def test_open_episode_is_visible_at_once_with_no_end(db):
    path, engine, writer = db
    writer.write([_episode("episode_opened", None)])
    [ep] = list_episodes(engine)
    assert ep["end"] is None and ep["start"] == "2026-11-27T08:00:02+00:00" and ep["label"] == "pain"
    # another process (the review command) sees it too, while the writer's engine is open
    with sqlite3.connect(path) as other:
        assert other.execute("select count(*) from episodes where end is null").fetchone() == (1,)
        assert other.execute("pragma journal_mode").fetchone() == ("wal",)


def test_episode_alerts_windows_and_health_land_in_their_tables(db):
    path, engine, writer = db
    writer.write([
        _message("health", 0.0, state="service_started"),
        _episode("episode_opened", None),
        _message("window", 4.0, start_s=2.0, level_dbfs=-20.0, activity=0.6, gated=True,
                 raw={"pain": 0.8}, smoothed={"pain": 0.7}),
        _message("window", 5.0, start_s=3.0, level_dbfs=-50.0, activity=0.0, gated=False, raw=None,
                 smoothed={"pain": 0.1}),
        _message("alert_raised", 5.0, label="pain", probability=0.81, episode=1),
    ])
    writer.write([_message("alert_cleared", 9.0, label="pain"), _episode("episode_closed", 6.0, alert=True)])
    [ep] = list_episodes(engine)
    assert ep["end"] == "2026-11-27T08:00:06+00:00" and ep["alert"] is True
    with sqlite3.connect(path) as conn:
        assert conn.execute("select count(*) from windows").fetchone() == (1,)  # ungated windows are not logged
        assert conn.execute("select episode_id from windows").fetchone() == (ep["id"],)
        raised, cleared, episode_id = conn.execute("select raised, cleared, episode_id from alerts").fetchone()
        assert raised.startswith("2026-11-27 08:00:05") and cleared.startswith("2026-11-27 08:00:09")
        assert episode_id == ep["id"]
        assert conn.execute("select kind from service_events").fetchall() == [("service_started",)]


def test_since_keeps_open_and_later_episodes(db):
    _path, engine, writer = db
    writer.write([_episode("episode_opened", None)])
    assert len(list_episodes(engine, since=T0 + timedelta(hours=5))) == 1  # still open
    writer.write([_episode("episode_closed", 6.0)])
    assert list_episodes(engine, since=T0 + timedelta(hours=5)) == []
    assert len(list_episodes(engine, since=T0)) == 1
    assert list_episodes(engine, bed="bed-1") == []


def test_unusable_database_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="not usable"):
        open_engine("nosuchdb://x")
    with pytest.raises(StoreError, match="cannot open database .*writable"):
        open_engine(f"sqlite:///{tmp_path}/missing/dir/log.db")


def test_utc_is_timezone_aware():
    assert utc(0).tzinfo is not None
