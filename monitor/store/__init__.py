"""The log: every episode, window, alarm and service state of a monitor, in any SQLAlchemy database.

- `database`: the tables, the writer that turns events into rows (and the spool that keeps them while the
  database refuses), opening and migrating a log (`migrations/`, Alembic), and the queries;
- `verdicts`: staff verdicts read back out: the review export and their agreement with the model's types.
"""
from monitor.store.database import (
    EpisodeFilter,
    Spool,
    StoreError,
    StoreWriter,
    acknowledge_in_log,
    annotate,
    close_interrupted,
    connect,
    episode_embeddings,
    episode_windows,
    list_episodes,
    monitored_seconds,
    open_engine,
    prepare,
    redact_url,
    utc,
)
from monitor.store.verdicts import agreement, to_csv

__all__ = ["EpisodeFilter", "Spool", "StoreError", "StoreWriter", "acknowledge_in_log", "agreement", "annotate",
           "close_interrupted", "connect",
           "episode_embeddings", "episode_windows", "list_episodes", "monitored_seconds", "open_engine", "prepare",
           "redact_url", "to_csv", "utc"]
