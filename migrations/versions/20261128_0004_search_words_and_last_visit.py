"""search: one trigram index on the name's words, and the latest visit kept on the patient

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Measured at 1,000,000 patients (bench/README.md): one LIKE per typed word on
# ' ' || search_name reads each trigram posting list once, where two LIKEs per word on
# search_name read it twice; and ranking by a stored last-visit time avoids a sub-select
# per matching patient.
_WORDS_INDEX = (
    "CREATE INDEX ix_patient_search_words_trgm ON patient "
    "USING gin ((' ' || search_name) gin_trgm_ops)"
)
_OLD_INDEX = (
    "CREATE INDEX ix_patient_search_name_trgm ON patient USING gin (search_name gin_trgm_ops)"
)


def upgrade() -> None:
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_visit_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE patient SET last_visit_at = "
        "(SELECT max(visit.opened_at) FROM visit WHERE visit.patient_id = patient.id) "
        "WHERE id IN (SELECT patient_id FROM visit)"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_patient_search_name_trgm")
        op.execute(_WORDS_INDEX)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_patient_search_words_trgm")
        op.execute(_OLD_INDEX)
    with op.batch_alter_table("patient", schema=None) as batch_op:
        batch_op.drop_column("last_visit_at")
