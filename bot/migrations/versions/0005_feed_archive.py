"""Reserved for the Atom work (entry updates, archive paging);
empty until that work lands.

Revision slots are reserved in advance so that work on different parts of the schema can land in
any order without forking the migration history.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
