"""Finding patients in the province-wide index.

Ranked: a patient holding the typed number as an identifier first; otherwise, in tiers,
names equal to what was typed, names starting with it, then names holding every typed word
at the start of one of their words, in any order (``an nguyen`` finds Nguyễn Văn An). Within
a tier the latest visit comes first, then the name, then the id: one total order, so page 2
follows page 1 exactly.

Why it runs as several statements: a common name (``an nguyen``, or ``nguyen`` typed on
the way to a full name) matches tens of thousands of patients at a province's size, and
sorting them all to find the latest twenty costs more than the search may take. So the
recently seen patients are read first, in the order of ``ix_patient_recent`` and from that
index alone (a "window" of ``RECENT_WINDOW`` rows); a tier the window cannot fill is then
looked for in the rest of the table, where a name that common is rare enough to sort. Every
row of the window comes before every row outside it in the ranking, so the result is the
same as one statement ranking everything (``tests/services/test_patient_search.py`` checks
this against a plain Python ranking).

Each statement selects ids only and goes through an ``Execute`` function: the caller loads
the page's patients, and the benchmark runs the very same SQL through the bare driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    case,
    column,
    literal_column,
    not_,
    select,
    table,
    true,
    union_all,
)
from sqlalchemy.orm import aliased

from his.errors import InvalidValue
from his.models import Patient, PatientIdentifier
from his.phone import normalise_phone
from his.text import fold_vi

# Rows of the recent-patients window. Twenty results of a name held by 1 in 250 patients
# are expected in it; rarer names fall through to the indexed look-ups, which are cheap
# for names that rare (bench/README.md has the measurements).
RECENT_WINDOW = 5_000

Execute = Callable[[Select], Sequence[Sequence[Any]]]

# Tiers of a name search, best first.
EXACT, PREFIX, WORDS = 1, 2, 3

# A record merged into another is found as the survivor only.
_LIVE = Patient.merged_into_id.is_(None)


@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    birth_year: int | None = None
    commune_code: str | None = None


def find_ids(
    execute: Execute, query: SearchQuery, dialect: str, want: int, window: int = RECENT_WINDOW
) -> list[int]:
    """The ids of the first ``want`` matching patients, in rank order."""
    if want <= 0:
        return []
    if any(ch.isdigit() for ch in query.q):
        terms = _identifier_terms(query.q)
        if terms:
            return _ids(execute(_by_identifier(query, terms).limit(want)))
    return _by_name(execute, query, dialect, want, window)


def page_statement(ids: list[int]) -> Select:
    """The patients of a page, unordered: the caller puts them in the order of ``ids``."""
    return select(Patient).where(Patient.id.in_(ids))


def _ids(rows: Sequence[Sequence[Any]]) -> list[int]:
    return [row[0] for row in rows]


# --- ordering --------------------------------------------------------------------------------


def _sorted_by_recency(t) -> list[ColumnElement]:
    """The order within a tier, written so that no index can provide it: the database sorts
    the matches it found instead of walking ``ix_patient_recent`` until twenty match, which
    it would otherwise choose for a name it wrongly thinks common (measured: 175 ms for
    ``nguyen van a``). ``IS NULL`` first is ``DESC NULLS LAST`` on both databases."""
    return [t.last_visit_at.is_(None), t.last_visit_at.desc(), t.search_name, t.id]


def _recent_order(dialect: str) -> list[ColumnElement]:
    """The same order as ``ix_patient_recent`` is built, so the window is read from it."""
    if dialect == "postgresql":
        first = Patient.last_visit_at.desc().nulls_last()
    else:
        first = Patient.last_visit_at.desc()  # SQLite sorts NULL lowest: last when DESC
    return [first, Patient.search_name, Patient.id]


# --- numbers ---------------------------------------------------------------------------------


def _identifier_terms(q: str) -> list[str]:
    """What a typed query could be as an identifier: a CCCD, CMND, BHYT (10 or 15), a
    phone in any format, or an MRN."""
    compact = "".join(ch for ch in q if ch.isalnum()).upper()
    terms = {compact} if compact else set()
    if len(compact) == 15 and compact[:2].isalpha():
        terms.add(compact[-10:])  # the social-insurance number inside a 15-character code
    with suppress(InvalidValue):
        terms.add(normalise_phone(q))
    return sorted(terms)


# Another name for the patient table inside the identifier look-up, so the sub-select is not
# correlated with the outer query. Made once: aliasing per search costs more than the query.
_OTHER = aliased(Patient, name="by_number")


def _by_identifier(query: SearchQuery, terms: list[str]) -> Select:
    by_identifier = select(PatientIdentifier.patient_id).where(PatientIdentifier.value.in_(terms))
    # One IN over a union of three index look-ups: an OR holding a sub-select cannot use an
    # index, and would read the whole patient table.
    matched = union_all(
        by_identifier,
        select(_OTHER.id).where(_OTHER.phone.in_(terms)),
        select(_OTHER.id).where(_OTHER.mrn.in_(terms)),
    )
    rank = case((Patient.id.in_(by_identifier), 0), else_=1)
    return (
        select(Patient.id)
        .where(_LIVE, _filters(Patient, query), Patient.id.in_(matched))
        .order_by(rank, *_sorted_by_recency(Patient))
    )


# --- names -----------------------------------------------------------------------------------


def _filters(t, query: SearchQuery) -> ColumnElement[bool]:
    """The birth-year and commune filters, over the table or the window's columns."""
    conditions = []
    if query.birth_year is not None:
        conditions.append(t.birth_year == query.birth_year)
    if query.commune_code:
        conditions.append(t.commune_code == query.commune_code)
    return and_(true(), *conditions)


def _like_escaped(token: str) -> str:
    """A typed ``%`` or ``_`` is a character to find, not a wildcard."""
    return token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _starts_with(t, folded: str, dialect: str) -> ColumnElement[bool]:
    """The name starts with ``folded``: LIKE on PostgreSQL (served by the text_pattern_ops
    index), a range on SQLite's plain index (its LIKE ignores case and so no index)."""
    if dialect == "postgresql":
        return t.search_name.like(f"{_like_escaped(folded)}%", escape="\\")
    # Every string that starts with ``folded`` sorts below ``folded`` + the last code point.
    return and_(t.search_name >= folded, t.search_name < folded + "\U0010ffff")


def _word_starts(t, token: str, dialect: str) -> ColumnElement[bool]:
    """A word of the name starts with ``token``. On PostgreSQL one LIKE on the name with a
    space in front, served by the trigram index on that expression (two LIKEs would read the
    same posting lists twice); SQLite's FTS5 index narrows the rows first (``_fts_rows``)."""
    escaped = _like_escaped(token)
    if dialect == "postgresql":
        # Inlined, not a bound parameter, so the expression matches the index's.
        return (literal_column("' '", String) + t.search_name).like(f"% {escaped}%", escape="\\")
    return (t.search_name.like(f"{escaped}%", escape="\\")) | (
        t.search_name.like(f"% {escaped}%", escape="\\")
    )


_FTS = table("patient_name_fts", column("rowid", Integer))


def _fts_rows(tokens: list[str]) -> Select | None:
    """SQLite: the rows whose FTS5 words start with every token, a superset of the LIKE
    conditions (FTS5 also splits at punctuation, so ``o'neil`` is the phrase ``o neil*``).
    None when no token has a letter or digit for FTS5 to look up."""
    phrases = [
        '"' + token.replace('"', '""') + '"*'
        for token in tokens
        if any(ch.isalnum() for ch in token)
    ]
    if not phrases:
        return None
    matches = literal_column("patient_name_fts").op("MATCH")(" ".join(phrases))
    return select(_FTS.c.rowid).where(matches)


@dataclass(frozen=True)
class _Tiers:
    """The conditions of each tier of a name search, over any object with the patient's
    column names (the table, or the window's columns)."""

    folded: str
    dialect: str

    @property
    def tokens(self) -> list[str]:
        return self.folded.split()

    def condition(self, tier: int, t) -> ColumnElement[bool]:
        folded, dialect = self.folded, self.dialect
        if not folded:
            return true()  # filters only: every patient is in the one tier
        if tier == EXACT:
            return t.search_name == folded
        starts = _starts_with(t, folded, dialect)
        if tier == PREFIX:
            return and_(starts, t.search_name != folded)
        return and_(*(_word_starts(t, token, dialect) for token in self.tokens), not_(starts))

    def tiers(self) -> tuple[int, ...]:
        return (EXACT, PREFIX, WORDS) if self.folded else (PREFIX,)

    def tier_of(self, t) -> ColumnElement[int]:
        return case(*((self.condition(tier, t), tier) for tier in self.tiers()))


def _by_name(execute: Execute, query: SearchQuery, dialect: str, want: int, window: int):
    tiers = _Tiers(fold_vi(query.q), dialect)
    recent = (
        select(
            Patient.id,
            Patient.search_name,
            Patient.last_visit_at,
            Patient.birth_year,
            Patient.commune_code,
        )
        .where(_LIVE)
        .order_by(*_recent_order(dialect))
        .limit(window)
        .subquery("recent")
    )
    found: list[int] = []
    in_window: list[tuple[int, int]] | None = None
    for tier in tiers.tiers():
        missing = want - len(found)
        if missing <= 0:
            break
        condition = and_(_LIVE, _filters(Patient, query), tiers.condition(tier, Patient))
        if tier == EXACT:
            # Served by the plain name index; even the commonest full name is few enough
            # to sort.
            exact = select(Patient.id).where(condition).order_by(*_sorted_by_recency(Patient))
            found += _ids(execute(exact.limit(missing)))
            continue
        if in_window is None:
            tier_of = tiers.tier_of(recent.c)
            window_stmt = (
                select(recent.c.id, tier_of)
                .where(_filters(recent.c, query), tier_of.is_not(None))
                .order_by(*_sorted_by_recency(recent.c))
            )
            in_window = [(row[0], row[1]) for row in execute(window_stmt)]
        seen = [pid for pid, t in in_window if t == tier][:missing]
        found += seen
        if len(seen) == missing:
            continue
        rest = select(Patient.id).where(condition, Patient.id.not_in(select(recent.c.id)))
        if dialect == "sqlite" and tier == WORDS:
            fts = _fts_rows(tiers.tokens)
            if fts is not None:
                rest = rest.where(Patient.id.in_(fts))
        rest = rest.order_by(*_sorted_by_recency(Patient)).limit(missing - len(seen))
        found += _ids(execute(rest))
    return found
