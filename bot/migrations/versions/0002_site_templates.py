"""Per-site learned boilerplate: each site's page count and the statistics of its text blocks.

Written by hand as a frozen snapshot (plain column types, explicit constraint names), like 0001.
See feeds.templates for what the numbers mean.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "site_templates",
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("site", name="pk_site_templates"),
    )
    op.create_table(
        "site_blocks",
        sa.Column("site", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("last_page", sa.Integer(), nullable=False),
        sa.Column("sightings", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("site", "fingerprint", name="pk_site_blocks"),
    )


def downgrade() -> None:
    op.drop_table("site_blocks")
    op.drop_table("site_templates")
