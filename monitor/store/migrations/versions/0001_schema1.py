"""The log as CryWatch wrote it before migrations existed (bus schema 1): episodes, windows,
alerts, service events.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "episodes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False, index=True),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("bed", sa.String(64), nullable=False, index=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("start", WHEN, nullable=False, index=True),
        sa.Column("end", WHEN, nullable=True),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("probs", sa.JSON(), nullable=False),
        sa.Column("peak", sa.JSON(), nullable=False),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.Column("alerted", sa.Boolean(), nullable=False),
        sa.Column("embedder_id", sa.String(), nullable=False),
        sa.Column("head", sa.String(), nullable=False),
    )
    op.create_table(
        "windows",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False, index=True),
        sa.Column("bed", sa.String(64), nullable=False),
        sa.Column("start", WHEN, nullable=False, index=True),
        sa.Column("level_dbfs", sa.Double(), nullable=False),
        sa.Column("activity", sa.Double(), nullable=False),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("smoothed", sa.JSON(), nullable=False),
        sa.Column("episode_id", sa.Integer(), sa.ForeignKey("episodes.id"), nullable=True),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False, index=True),
        sa.Column("bed", sa.String(64), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("raised", WHEN, nullable=False, index=True),
        sa.Column("cleared", WHEN, nullable=True),
        sa.Column("probability", sa.Double(), nullable=False),
        sa.Column("episode_id", sa.Integer(), sa.ForeignKey("episodes.id"), nullable=True),
    )
    op.create_table(
        "service_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False, index=True),
        sa.Column("bed", sa.String(64), nullable=False),
        sa.Column("time", WHEN, nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    for table in ("service_events", "alerts", "windows", "episodes"):
        op.drop_table(table)
