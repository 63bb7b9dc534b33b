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
from functools import cache, partial
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    bindparam,
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

# Runs one statement with its parameters and returns the rows.
Execute = Callable[[Select, dict[str, Any]], Sequence[Sequence[Any]]]

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
            stmt = _by_identifier(query.birth_year is not None, bool(query.commune_code))
            values = {**_filter_values(query), **_slot_values("term", terms, _TERMS), "n": want}
            return _ids(execute(stmt, values))
    return _by_name(execute, query, dialect, want, window)


# The statements of a search are built once for each shape of query, so building them costs
# nothing per search; only their parameters change. Lists of values are padded to a fixed
# size for the same reason: an expanding IN list is rendered into the SQL anew on every run
# (measured: a third of the Python cost of a number look-up).
_PAGE_SIZES = (1, 5, 21, 101)


@cache
def page_statement(size: int) -> Select:
    """The patients of a page of up to ``size`` ids, unordered."""
    return select(Patient).where(Patient.id.in_(_slots("id", size, Integer)))


def page_slots(ids: list[int]) -> tuple[int, dict[str, Any]]:
    """The size of ``page_statement`` that loads the patients of ``ids`` (in no order: the
    caller puts them in the order of ``ids``), and its parameters."""
    size = next((n for n in _PAGE_SIZES if n >= len(ids)), len(ids))
    return size, _slot_values("id", ids, size)


def _slots(name: str, size: int, type_) -> list:
    return [bindparam(f"{name}{n}", type_=type_) for n in range(size)]


def _slot_values(name: str, values: list, size: int) -> dict[str, Any]:
    """``values`` padded with its last one: an IN list does not mind a repeat."""
    padded = values + values[-1:] * (size - len(values)) if values else [None] * size
    return {f"{name}{n}": value for n, value in enumerate(padded)}


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


_TERMS = 3  # a compact number, the ten digits inside a 15-character card, a phone


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


@cache
def _by_identifier(birth_year: bool, commune: bool) -> Select:
    terms = _slots("term", _TERMS, String)
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
        .where(_LIVE, _filters(Patient, birth_year, commune), Patient.id.in_(matched))
        .order_by(rank, *_sorted_by_recency(Patient))
        .limit(_N)
    )


# --- names -----------------------------------------------------------------------------------


_N = bindparam("n", type_=Integer)  # how many rows a statement returns


def _filters(t, birth_year: bool, commune: bool) -> ColumnElement[bool]:
    """The birth-year and commune filters, over the table or the window's columns."""
    conditions = []
    if birth_year:
        conditions.append(t.birth_year == bindparam("birth_year", type_=Integer))
    if commune:
        conditions.append(t.commune_code == bindparam("commune_code", type_=String))
    return and_(true(), *conditions)


def _filter_values(query: SearchQuery) -> dict[str, Any]:
    return {"birth_year": query.birth_year, "commune_code": query.commune_code}


def _like_escaped(token: str) -> str:
    """A typed ``%`` or ``_`` is a character to find, not a wildcard."""
    return token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _starts_with(t, dialect: str) -> ColumnElement[bool]:
    """The name starts with what was typed: LIKE on PostgreSQL (served by the
    text_pattern_ops index), a range on SQLite's plain index (its LIKE ignores case and so
    no index)."""
    if dialect == "postgresql":
        return t.search_name.like(bindparam("prefix", type_=String), escape="\\")
    return and_(
        t.search_name >= bindparam("folded", type_=String),
        t.search_name < bindparam("folded_end", type_=String),
    )


def _word_starts(t, n: int) -> ColumnElement[bool]:
    """A word of the name starts with typed word ``n``: the rule itself, which no index
    serves; the look-ups outside the window narrow the rows first (``_narrowed``)."""
    return t.search_name.like(bindparam(f"first{n}", type_=String), escape="\\") | (
        t.search_name.like(bindparam(f"word{n}", type_=String), escape="\\")
    )


def _narrowed(stmt: Select, shape: _Shape) -> Select:
    """The rows that can hold every typed word, through an index: on PostgreSQL the trigram
    index on ``' ' || search_name``, on SQLite the FTS5 word index."""
    if shape.dialect == "postgresql":
        # The space inlined, not a bound parameter, so the expression matches the index's.
        spaced = literal_column("' '", String) + Patient.search_name
        grams = (
            spaced.like(bindparam(f"grams{n}", type_=String), escape="\\")
            for n in range(shape.words)
        )
        return stmt.where(*grams)
    if shape.fts:
        return stmt.where(Patient.id.in_(_FTS_ROWS))
    return stmt


def _name_values(folded: str, dialect: str) -> dict[str, Any]:
    """The parameters of the name statements for what was typed."""
    values: dict[str, Any] = {"folded": folded}
    if dialect == "postgresql":
        values["prefix"] = _like_escaped(folded) + "%"
    else:
        # Every string that starts with ``folded`` sorts below ``folded`` + the last code point.
        values["folded_end"] = folded + "\U0010ffff"
    for n, token in enumerate(folded.split()):
        escaped = _like_escaped(token)
        values[f"word{n}"] = f"% {escaped}%"
        values[f"first{n}"] = f"{escaped}%"
        # PostgreSQL's trigram look-up: the word anywhere reads half the posting lists that
        # the word after a space does (no trigrams of the padding, shared by every word
        # starting with the same letter); a word under three letters has no trigram of its
        # own and keeps the space. _word_starts then holds the rows to the rule.
        values[f"grams{n}"] = f"%{escaped}%" if len(token) >= 3 else f"% {escaped}%"
    return values


def _fts_match(tokens: list[str]) -> str | None:
    """SQLite: an FTS5 query for names with a word starting with every token: a superset of
    the LIKE conditions (FTS5 also splits at punctuation, so ``o'neil`` is the phrase
    ``o neil*``). None when no token has a letter or digit for FTS5 to look up."""
    phrases = [
        '"' + token.replace('"', '""') + '"*'
        for token in tokens
        if any(ch.isalnum() for ch in token)
    ]
    return " ".join(phrases) if phrases else None


_FTS = table("patient_name_fts", column("rowid", Integer))
_FTS_ROWS = select(_FTS.c.rowid).where(
    literal_column("patient_name_fts").op("MATCH")(bindparam("fts", type_=String))
)


@dataclass(frozen=True)
class _Shape:
    """What decides the statements of a name search; everything else is a parameter."""

    dialect: str
    words: int  # typed words; 0 when searching by the filters alone
    birth_year: bool
    commune: bool
    fts: bool  # SQLite: the word index can narrow the rows

    def tiers(self) -> tuple[int, ...]:
        return (EXACT, PREFIX, WORDS) if self.words else (PREFIX,)

    def condition(self, tier: int, t) -> ColumnElement[bool]:
        """Patients of ``tier``, over any object with the patient's column names (the table,
        or the window's columns)."""
        if not self.words:
            return true()  # filters only: every patient is in the one tier
        folded = bindparam("folded", type_=String)
        if tier == EXACT:
            return t.search_name == folded
        starts = _starts_with(t, self.dialect)
        if tier == PREFIX:
            return and_(starts, t.search_name != folded)
        words = (_word_starts(t, n) for n in range(self.words))
        return and_(*words, not_(starts))


@dataclass(frozen=True)
class _Statements:
    exact: Select
    window: Select  # (id, tier) of the window's matches, in rank order
    rest: dict[int, Select]  # per tier: its matches outside the window, in rank order


@cache
def _statements(shape: _Shape) -> _Statements:
    filters = partial(_filters, birth_year=shape.birth_year, commune=shape.commune)
    recent = (
        select(
            Patient.id,
            Patient.search_name,
            Patient.last_visit_at,
            Patient.birth_year,
            Patient.commune_code,
        )
        .where(_LIVE)
        .order_by(*_recent_order(shape.dialect))
        .limit(bindparam("window", type_=Integer))
        .subquery("recent")
    )
    tier_of = case(*((shape.condition(tier, recent.c), tier) for tier in shape.tiers()))
    window = (
        select(recent.c.id, tier_of)
        .where(filters(recent.c), tier_of.is_not(None))
        .order_by(*_sorted_by_recency(recent.c))
    )
    rest = {}
    for tier in shape.tiers():
        stmt = select(Patient.id).where(
            _LIVE,
            filters(Patient),
            shape.condition(tier, Patient),
            Patient.id.not_in(select(recent.c.id)),
        )
        if tier == WORDS:
            stmt = _narrowed(stmt, shape)
        rest[tier] = stmt.order_by(*_sorted_by_recency(Patient)).limit(_N)
    exact = (
        select(Patient.id)
        .where(_LIVE, filters(Patient), shape.condition(EXACT, Patient))
        .order_by(*_sorted_by_recency(Patient))
        .limit(_N)
    )
    return _Statements(exact, window, rest)


def _by_name(execute: Execute, query: SearchQuery, dialect: str, want: int, window: int):
    folded = fold_vi(query.q)
    tokens = folded.split()
    fts = _fts_match(tokens) if dialect == "sqlite" else None
    shape = _Shape(
        dialect, len(tokens), query.birth_year is not None, bool(query.commune_code), bool(fts)
    )
    statements = _statements(shape)
    values = {**_name_values(folded, dialect), **_filter_values(query), "window": window}
    if fts:
        values["fts"] = fts
    found: list[int] = []
    in_window: list[tuple[int, int]] | None = None
    for tier in shape.tiers():
        missing = want - len(found)
        if missing <= 0:
            break
        if tier == EXACT:
            # Served by the plain name index; even the commonest full name is few enough
            # to sort.
            found += _ids(execute(statements.exact, {**values, "n": missing}))
            continue
        if in_window is None:
            in_window = [(row[0], row[1]) for row in execute(statements.window, values)]
        seen = [pid for pid, t in in_window if t == tier][:missing]
        found += seen
        if len(seen) < missing:
            rest = {**values, "n": missing - len(seen)}
            found += _ids(execute(statements.rest[tier], rest))
    return found
