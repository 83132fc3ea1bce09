"""Alembic environment for the CryWatch log. monitor/store/database.py runs it on the connection it opens
(config.attributes["connection"]); `render_as_batch` lets SQLite alter tables by copying them."""
from alembic import context

from monitor.store.database import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
