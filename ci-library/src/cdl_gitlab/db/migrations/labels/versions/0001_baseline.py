"""Baseline of a project's labels table (``<project_slug>_labels``, name passed as the
``table`` attribute): the schema ``create_all`` made before migrations.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from cdl_gitlab.db.ops import create_table_if_missing

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_table_if_missing(
        op.get_context().config.attributes["table"],
        sa.Column("split", sa.String(16), primary_key=True),
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("file_path", sa.Text, nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("labeler", sa.String(200), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("data_repo", sa.String(100), nullable=False),
        sa.Column("data_branch", sa.String(100), nullable=False),
        sa.Column("data_commit", sa.String(100), nullable=False),
        sa.Column("imported_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError("the baseline is not downgraded")
