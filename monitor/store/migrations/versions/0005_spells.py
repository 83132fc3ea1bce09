"""Episodes are crying spells: their crying time, bouts, pitch, type evidence, and the newest cry frame of an open one.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An older log's episodes were not measured: zero crying time and no pitch, which the report says.
    with op.batch_alter_table("episodes") as batch:
        batch.add_column(sa.Column("last", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("crying_s", sa.Double(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("bouts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("voiced_s", sa.Double(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("high_pitch_s", sa.Double(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("f0_median_hz", sa.Double(), nullable=True))
        batch.add_column(sa.Column("evidence", sa.JSON(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("a log is never downgraded: keep a copy before upgrading CryWatch")
