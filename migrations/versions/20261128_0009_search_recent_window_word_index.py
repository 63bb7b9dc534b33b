"""search: the recent-patients window, prefix and whole-word indexes, a word index for SQLite

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The search ranks each tier of matches by the latest visit. A common name matches tens of
# thousands of patients, and reading them all to find the latest twenty costs more than the
# target allows; the recent patients are read first, in this index's order, from the index
# alone (name, birth year and commune are in it for the filters), and only a tier that the
# window cannot fill is looked for in the whole table (bench/README.md).
_RECENT_PG = (
    "CREATE INDEX ix_patient_recent ON patient "
    "(last_visit_at DESC NULLS LAST, id DESC, search_name, birth_year, commune_code) "
    "WHERE merged_into_id IS NULL"
)
# SQLite sorts NULL below every value, so DESC already puts the never-seen last; it reads
# a partial index alone only when the index also holds the column of its condition.
_RECENT_SQLITE = (
    "CREATE INDEX ix_patient_recent ON patient "
    "(last_visit_at DESC, id DESC, search_name, birth_year, commune_code, merged_into_id) "
    "WHERE merged_into_id IS NULL"
)
# A name that starts with what was typed: the database's collation is not C everywhere,
# so the plain index cannot serve LIKE 'x%' (SQLite uses a range on its plain index).
_PREFIX_PG = "CREATE INDEX ix_patient_search_name_prefix ON patient (search_name text_pattern_ops)"

# A name holding every typed word as a whole word ranks above one where a word only starts
# with it; trigrams of word ends are too common to find those quickly, lexemes are not.
_LEXEMES_PG = (
    "CREATE INDEX ix_patient_search_lexemes ON patient "
    "USING gin (to_tsvector('simple', search_name))"
)

# SQLite has no trigram index: an FTS5 word index over the folded name, kept by triggers
# (so bulk SQL and loaders keep it too) and read by rowid = patient.id. A later migration
# that rebuilds ``patient`` on SQLite (batch mode) drops the triggers and must make them
# again; tests/services/test_patient_search.py fails if it does not. Typed words are prefixes:
# FTS5 keeps a list for every prefix of 2 to 5 letters instead of merging the lists of all
# words that start with one (measured at 1,000,000: `lam* van* minh*` 26 → 7 ms).
_FTS_SQLITE = (
    "CREATE VIRTUAL TABLE patient_name_fts USING fts5("
    "search_name, content='patient', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 0', prefix='2 3 4 5')",
    "CREATE TRIGGER patient_name_fts_insert AFTER INSERT ON patient BEGIN "
    "INSERT INTO patient_name_fts(rowid, search_name) VALUES (new.id, new.search_name); END",
    "CREATE TRIGGER patient_name_fts_delete AFTER DELETE ON patient BEGIN "
    "INSERT INTO patient_name_fts(patient_name_fts, rowid, search_name) "
    "VALUES ('delete', old.id, old.search_name); END",
    "CREATE TRIGGER patient_name_fts_update AFTER UPDATE OF search_name ON patient BEGIN "
    "INSERT INTO patient_name_fts(patient_name_fts, rowid, search_name) "
    "VALUES ('delete', old.id, old.search_name); "
    "INSERT INTO patient_name_fts(rowid, search_name) VALUES (new.id, new.search_name); END",
    "INSERT INTO patient_name_fts(patient_name_fts) VALUES ('rebuild')",
)
_FTS_SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS patient_name_fts_update",
    "DROP TRIGGER IF EXISTS patient_name_fts_delete",
    "DROP TRIGGER IF EXISTS patient_name_fts_insert",
    "DROP TABLE IF EXISTS patient_name_fts",
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_RECENT_PG)
        op.execute(_PREFIX_PG)
        op.execute(_LEXEMES_PG)
    else:
        op.execute(_RECENT_SQLITE)
        for statement in _FTS_SQLITE:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_patient_search_lexemes")
        op.execute("DROP INDEX IF EXISTS ix_patient_search_name_prefix")
    else:
        for statement in _FTS_SQLITE_DROP:
            op.execute(statement)
    op.execute("DROP INDEX IF EXISTS ix_patient_recent")
