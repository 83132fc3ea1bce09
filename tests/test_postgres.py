"""A unit's log in one place: two monitors writing to one real PostgreSQL server at once."""
import threading

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from monitor.service import Service
from monitor.store import EpisodeFilter, annotate, list_episodes, open_engine
from monitor.store.database import Base
from tests.conftest import free_endpoint


def test_two_monitors_log_to_one_postgresql_server(settings, models, postgres_url):
    engine = open_engine(postgres_url)  # created by the migrations, as on SQLite
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    services = [Service(settings.with_overrides(
        audio={"input": "scenario:nicu", "speed": 4.0}, store={"url": postgres_url},
        bus={"endpoint": free_endpoint()}, service={"bed": bed}), models=models) for bed in ("bed-p1", "bed-p2")]
    runners = [threading.Thread(target=s.run) for s in services]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join(timeout=120)
    episodes = list_episodes(engine)
    assert {e["bed"] for e in episodes} == {"bed-p1", "bed-p2"}
    assert all(e["end"] is not None for e in episodes)
    first = list_episodes(engine, EpisodeFilter(bed="bed-p2"))[0]
    annotate(engine, first["id"], "not_cry", "AB", "synthetic")
    assert list_episodes(engine, EpisodeFilter(bed="bed-p2", unreviewed=True)) == list_episodes(
        engine, EpisodeFilter(bed="bed-p2"))[1:]
    with engine.connect() as connection:
        alarms = connection.exec_driver_sql("select bed, priority from alarms where not technical").fetchall()
    assert {bed for bed, _ in alarms} == {"bed-p1", "bed-p2"}
