"""reference data: 2025 administrative units, the old-to-new commune table, BHYT groups

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 23:50:00.000000

Loads the CSV files in his/data (see his/data/README.md). The tables are declared here, not
imported from the application, so this revision keeps working as the models change.
"""

import csv
import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATA_DIR = Path(__file__).resolve().parents[2] / "his" / "data"
ADMIN_UNITS_FROM = dt.date(2025, 7, 1)
CHUNK = 1000

admin_unit = sa.table(
    "admin_unit",
    sa.column("level", sa.String),
    sa.column("code", sa.String),
    sa.column("name", sa.String),
    sa.column("province_code", sa.String),
    sa.column("valid_from", sa.Date),
    sa.column("valid_to", sa.Date),
)
legacy_commune_map = sa.table(
    "legacy_commune_map",
    sa.column("old_commune_code", sa.String),
    sa.column("new_commune_code", sa.String),
    sa.column("old_commune_name", sa.String),
    sa.column("old_district_code", sa.String),
    sa.column("old_province_code", sa.String),
    sa.column("new_province_code", sa.String),
    sa.column("partial", sa.Boolean),
)
bhyt_group = sa.table(
    "bhyt_group",
    sa.column("code", sa.String),
    sa.column("benefit_level", sa.Integer),
    sa.column("description", sa.String),
    sa.column("valid_from", sa.Date),
    sa.column("valid_to", sa.Date),
    sa.column("source", sa.String),
)


def _rows(name: str) -> list[dict[str, str]]:
    with (DATA_DIR / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _date(text: str) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _chunks(rows: list[dict], size: int = CHUNK) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _admin_units() -> list[dict]:
    return [
        {
            "level": r["level"],
            "code": r["code"],
            "name": r["name"],
            "province_code": r["province_code"],
            "valid_from": ADMIN_UNITS_FROM,
            "valid_to": None,
        }
        for r in _rows("admin_units_2025.csv")
    ]


def _legacy_communes() -> list[dict]:
    return [
        {
            "old_commune_code": r["old_commune_code"],
            "new_commune_code": r["new_commune_code"],
            "old_commune_name": r["old_commune_name"],
            "old_district_code": r["old_district_code"],
            "old_province_code": r["old_province_code"],
            "new_province_code": r["new_province_code"],
            "partial": r["partial"] == "1",
        }
        for r in _rows("legacy_communes_2025.csv")
    ]


def _bhyt_groups() -> list[dict]:
    return [
        {
            "code": r["code"],
            "benefit_level": int(r["benefit_level"]),
            "description": r["description"],
            "valid_from": _date(r["valid_from"]),
            "valid_to": _date(r["valid_to"]),
            "source": r["source"],
        }
        for r in _rows("bhyt_groups.csv")
    ]


def upgrade() -> None:
    for table, rows in (
        (admin_unit, _admin_units()),
        (legacy_commune_map, _legacy_communes()),
        (bhyt_group, _bhyt_groups()),
    ):
        for chunk in _chunks(rows):
            op.bulk_insert(table, chunk)


def downgrade() -> None:
    conn = op.get_bind()
    conn.execute(admin_unit.delete().where(admin_unit.c.valid_from == ADMIN_UNITS_FROM))
    pairs = [(r["old_commune_code"], r["new_commune_code"]) for r in _legacy_communes()]
    for chunk in _chunks(pairs):
        conn.execute(
            legacy_commune_map.delete().where(
                sa.tuple_(
                    legacy_commune_map.c.old_commune_code, legacy_commune_map.c.new_commune_code
                ).in_(chunk)
            )
        )
    for group in _bhyt_groups():
        conn.execute(
            bhyt_group.delete().where(
                bhyt_group.c.code == group["code"], bhyt_group.c.valid_from == group["valid_from"]
            )
        )
