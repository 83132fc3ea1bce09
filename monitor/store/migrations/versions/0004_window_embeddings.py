"""Optional per-window embeddings ([store] log_embeddings): numbers, not audio.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "window_embeddings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("window_id", sa.Integer(), sa.ForeignKey("windows.id"), nullable=False, index=True),
        sa.Column("embedder_id", sa.String(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("a log is never downgraded: keep a copy before upgrading CryWatch")
