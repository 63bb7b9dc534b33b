"""ICD-10: the WHO 2019 list with Vietnamese titles of common codes and the rule flags

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 02:00:00.000000

Every database starts with one ICD-10 version valid from 2000-01-01, so diagnoses can be
coded before the Ministry of Health's list is loaded (`his catalog load icd10`); a list
loaded later with a later start date takes over from its first day. The rows come from
his.services.catalog_import, the loader the CLI uses too (see his/data/README.md).
"""

from collections.abc import Sequence

from alembic import op

from his.services import catalog_import

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    catalog_import.load_who_icd10(op.get_bind())


def downgrade() -> None:
    catalog_import.delete_icd10_version(op.get_bind(), catalog_import.WHO_VERSION_NAME)
