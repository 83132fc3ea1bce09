"""Alarms with priorities and acknowledgement replace alerts (their rows are carried over),
staff annotations of episodes, service states named as in bus schema 2.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)
_STATES = {"service_started": "started", "service_stopped": "stopped", "worker_failed": "failed"}


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False, index=True),
        sa.Column("alarm", sa.Integer(), nullable=False),
        sa.Column("bed", sa.String(64), nullable=False, index=True),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("technical", sa.Boolean(), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("raised", WHEN, nullable=False, index=True),
        sa.Column("acknowledged", WHEN, nullable=True),
        sa.Column("acknowledged_by", sa.String(16), nullable=True),
        sa.Column("silenced", WHEN, nullable=True),
        sa.Column("cleared", WHEN, nullable=True),
        sa.Column("clear_reason", sa.String(), nullable=True),
        sa.Column("announcements", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Double(), nullable=True),
        sa.Column("episode_id", sa.Integer(), sa.ForeignKey("episodes.id"), nullable=True),
    )
    op.create_table(
        "annotations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("episode_id", sa.Integer(), sa.ForeignKey("episodes.id"), nullable=False, index=True),
        sa.Column("verdict", sa.String(32), nullable=False),
        sa.Column("note", sa.String(), nullable=False),
        sa.Column("by", sa.String(16), nullable=False),
        sa.Column("time", WHEN, nullable=False),
    )
    # Schema 1's alerts were pain/neurological cry alerts: high priority, never acknowledged.
    op.execute(
        "INSERT INTO alarms (run_id, alarm, bed, label, technical, priority, message, raised, cleared, clear_reason, "
        "announcements, probability, episode_id) "
        "SELECT run_id, id, bed, label, false, CASE WHEN label IN ('pain', 'neurological') THEN 'high' ELSE 'medium' END, "
        "UPPER(label) || ' CRY', raised, cleared, CASE WHEN cleared IS NULL THEN NULL ELSE 'below threshold' END, "
        "1, probability, episode_id FROM alerts")
    op.drop_table("alerts")
    for old, new in _STATES.items():
        op.execute(sa.text("UPDATE service_events SET kind = :new WHERE kind = :old").bindparams(old=old, new=new))


def downgrade() -> None:
    raise NotImplementedError("a log is never downgraded: keep a copy before upgrading CryWatch")
