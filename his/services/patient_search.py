"""Finding patients in the province-wide index.

Ranked: a patient holding the typed number as an identifier first; otherwise, in tiers,
names equal to what was typed, names starting with it, names holding every typed word as a
whole word, then names with a word starting with every typed word, in any order (``an
nguyen`` finds Nguyễn Văn An, then Nguyễn Văn Anh). Within
a tier the latest visit comes first, then the latest registered (the highest id): one total
order, so page 2 follows page 1 exactly. (The latest registered, not the name, so that in an
index nobody has visited yet the window below is not the alphabet's first names.)

Why it runs as several statements: a common name (``an nguyen``, or ``nguyen`` typed on
the way to a full name) matches tens of thousands of patients at a province's size, and
sorting them all to find the latest twenty costs more than the search may take. So the
recently seen patients are read first, in the order of ``ix_patient_recent`` and from that
index alone (a "window" of ``RECENT_WINDOW`` rows); a tier the window cannot fill is then
looked for in the rest of the table, where a name that common is rare enough to sort. Every
row of the window comes before every row outside it in the ranking, so the result is the
same as one statement ranking everything (``tests/services/test_patient_search.py`` checks
this against a plain Python ranking).

A number is one statement that loads the ranked patients themselves. A name search selects
ids only, through an ``Execute`` function (``find_ids``, which the tests drive with any
window), then loads the page's patients.
"""

from __future__ import annotations

import re
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
    func,
    literal,
    literal_column,
    select,
    table,
    true,
    union_all,
)
from sqlalchemy.orm import Session, aliased

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

# Tiers of a name search, best first: the name typed exactly; a name starting with it; a name
# holding every typed word as a whole word (``van an`` → Nguyễn Văn An); a name with a word
# starting with every typed word (``van an`` → Nguyễn Văn Anh).
EXACT, PREFIX, WHOLE, WORDS = 1, 2, 3, 4

# A record merged into another is found as the survivor only.
_LIVE = Patient.merged_into_id.is_(None)

_N = bindparam("n", type_=Integer)  # how many rows a statement returns


@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    birth_year: int | None = None
    commune_code: str | None = None


def search(
    session: Session, query: SearchQuery, offset: int, limit: int, options: tuple = ()
) -> tuple[list[Patient], bool]:
    """A page of the ranked patients (loaded with the loader ``options``, a tuple made once),
    and whether more follow."""
    want = offset + limit + 1  # one more: whether another page follows
    number = _number_values(query, want)
    if number is not None:
        stmt = _by_number(query.birth_year is not None, bool(query.commune_code), options)
        found = list(session.scalars(stmt, number))
        return found[offset : offset + limit], len(found) > offset + limit
    connection = session.connection()  # ids through Core: no ORM work for plain rows

    def execute(stmt, values):
        return connection.execute(stmt, values).all()

    ids = find_ids(execute, query, connection.dialect.name, want)
    page = ids[offset : offset + limit]
    size = next((n for n in _PAGE_SIZES if n >= len(page)), len(page))
    loaded = session.scalars(_page(size, options), _slot_values("id", page, size))
    by_id = {patient.id: patient for patient in loaded}
    return [by_id[pid] for pid in page], len(ids) > offset + limit


def find_ids(
    execute: Execute, query: SearchQuery, dialect: str, want: int, window: int = RECENT_WINDOW
) -> list[int]:
    """The ids of the first ``want`` patients a name (or the filters alone) finds, in rank
    order; ``window`` rows of recent patients are read first."""
    if want <= 0:
        return []
    return _by_name(execute, query, dialect, want, window)


def _number_values(query: SearchQuery, want: int) -> dict[str, Any] | None:
    """The parameters of the look-up by number, or None when ``q`` is not a number."""
    if not any(ch.isdigit() for ch in query.q):
        return None
    terms = _identifier_terms(query.q)
    if not terms:
        return None
    return {**_filter_values(query), **_slot_values("term", terms, _TERMS), "n": want}


# The statements of a search are built once for each shape of query, so building them costs
# nothing per search; only their parameters change. Lists of values are padded to a fixed
# size for the same reason: an expanding IN list is rendered into the SQL anew on every run
# (measured: a third of the Python cost of a number look-up).
_PAGE_SIZES = (1, 5, 21, 101)


@cache
def _page(size: int, options: tuple) -> Select:
    """The patients of a page of up to ``size`` ids, unordered (the caller orders them)."""
    return select(Patient).where(Patient.id.in_(_slots("id", size, Integer))).options(*options)


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
    return [t.last_visit_at.is_(None), t.last_visit_at.desc(), t.id.desc()]


def _recent_order(dialect: str) -> list[ColumnElement]:
    """The same order as ``ix_patient_recent`` is built, so the window is read from it."""
    if dialect == "postgresql":
        first = Patient.last_visit_at.desc().nulls_last()
    else:
        first = Patient.last_visit_at.desc()  # SQLite sorts NULL lowest: last when DESC
    return [first, Patient.id.desc()]


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
def _by_number(birth_year: bool, commune: bool, options: tuple) -> Select:
    """The ranked patients themselves, in one statement (measured: an ids statement and a
    page statement cost twice the Python time of one, more than the look-up itself)."""
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
        select(Patient)
        .where(_LIVE, _filters(Patient, birth_year, commune), Patient.id.in_(matched))
        .order_by(rank, *_sorted_by_recency(Patient))
        .limit(_N)
        .options(*options)
    )


# --- names -----------------------------------------------------------------------------------


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


def _like(expression, name: str) -> ColumnElement[bool]:
    return expression.like(bindparam(name, type_=String), escape="\\")


def _spaced(t, after: bool = False):
    """The name with a space in front (and behind): a word of it then starts after a space.
    The spaces are inlined, not bound parameters, so the expression matches the trigram
    index's (``' ' || search_name``)."""
    spaced = literal_column("' '", String) + t.search_name
    return spaced + literal_column("' '", String) if after else spaced


def _starts_with(t, dialect: str) -> ColumnElement[bool]:
    """The name starts with what was typed: LIKE on PostgreSQL (served by the
    text_pattern_ops index), a range on SQLite's plain index (its LIKE ignores case and so
    no index serves it)."""
    if dialect == "postgresql":
        return _like(t.search_name, "prefix")
    return and_(
        t.search_name >= bindparam("folded", type_=String),
        t.search_name < bindparam("folded_end", type_=String),
    )


def _narrowed(stmt: Select, shape: _Shape, whole: bool) -> Select:
    """The rows that can hold every typed word (as a whole word when ``whole``), through a
    word index; the tier conditions then hold the rows to the rule. PostgreSQL: the typed
    words anywhere in the name through the trigram index on ``' ' || search_name``, whole
    words as lexemes through the index on ``to_tsvector('simple', search_name)`` (trigrams
    of word ends are too common to be quick). SQLite: the FTS5 word index, by prefix or by
    whole word."""
    if shape.dialect == "postgresql":
        if whole and shape.lexemes:
            return stmt.where(_LEXEMES.op("@@")(_LEXEME_QUERY))
        return stmt.where(*(_like(_spaced(Patient), f"grams{n}") for n in range(shape.words)))
    if shape.lexemes:
        return stmt.where(Patient.id.in_(_FTS_WHOLE_ROWS if whole else _FTS_ROWS))
    return stmt


_SIMPLE = literal_column("'simple'")
_LEXEMES = func.to_tsvector(_SIMPLE, Patient.search_name)
_LEXEME_QUERY = func.to_tsquery(_SIMPLE, bindparam("lexemes", type_=String))


def _runs(token: str) -> list[str]:
    """The letters-and-digits runs of a typed word: how the word indexes split a name
    (``o'neil`` → ``o``, ``neil``), so that looking up every run finds a superset."""
    return re.findall(r"[^\W_]+", token)


def _word_index_values(tokens: list[str]) -> dict[str, str] | None:
    """The look-ups of the word indexes for the typed words; None when no word has a letter
    or digit to look up. SQLite: FTS5 queries (a quoted run, ``*`` for a prefix). PostgreSQL:
    a tsquery of whole lexemes (the runs hold no tsquery operator)."""
    per_token = [runs for runs in map(_runs, tokens) if runs]
    if not per_token:
        return None
    phrases = ['"' + " ".join(runs) + '"' for runs in per_token]
    return {
        "fts": " ".join(phrase + "*" for phrase in phrases),
        "fts_whole": " ".join(phrases),
        "lexemes": " & ".join(run for runs in per_token for run in runs),
    }


def _name_values(folded: str) -> dict[str, Any]:
    """The parameters of the name statements for what was typed."""
    values: dict[str, Any] = {"folded": folded, "prefix": _like_escaped(folded) + "%"}
    # Every string that starts with ``folded`` sorts below ``folded`` + the last code point.
    values["folded_end"] = folded + "\U0010ffff"
    for n, token in enumerate(folded.split()):
        escaped = _like_escaped(token)
        values[f"first{n}"] = f"{escaped}%"
        values[f"word{n}"] = f"% {escaped}%"
        values[f"whole{n}"] = f"% {escaped} %"
        # PostgreSQL's trigram look-up: the word anywhere reads half the posting lists that
        # the word after a space does (no trigrams of the padding, shared by every word
        # starting with the same letter); a word under three letters has no trigram of its
        # own and keeps the space. The tier conditions then hold the rows to the rule.
        values[f"grams{n}"] = f"%{escaped}%" if len(token) >= 3 else f"% {escaped}%"
    return values


def _fts_rows(parameter: str) -> Select:
    matches = literal_column("patient_name_fts").op("MATCH")(bindparam(parameter, type_=String))
    return select(table("patient_name_fts", column("rowid", Integer)).c.rowid).where(matches)


_FTS_ROWS = _fts_rows("fts")
_FTS_WHOLE_ROWS = _fts_rows("fts_whole")


@dataclass(frozen=True)
class _Shape:
    """What decides the statements of a name search; everything else is a parameter."""

    dialect: str
    words: int  # typed words; 0 when searching by the filters alone
    birth_year: bool
    commune: bool
    lexemes: bool  # the typed words have letters or digits for a word index to look up

    def tiers(self) -> tuple[int, ...]:
        return (EXACT, PREFIX, WHOLE, WORDS) if self.words else (PREFIX,)

    def matches(self, t) -> ColumnElement[bool]:
        """In some tier: every typed word starts a word of the name (an equal name and a
        name starting with what was typed are no exception)."""
        starts = (
            _like(t.search_name, f"first{n}") | _like(t.search_name, f"word{n}")
            for n in range(self.words)
        )
        return and_(true(), *starts)

    def tier_of(self, t) -> ColumnElement[int]:
        """The tier of a patient that ``matches``, over any object with the patient's
        column names (the table, or the window's columns)."""
        if not self.words:
            return literal(PREFIX, Integer)  # filters only: every patient is in one tier
        whole = (_like(_spaced(t, after=True), f"whole{n}") for n in range(self.words))
        return case(
            (t.search_name == bindparam("folded", type_=String), EXACT),
            (_starts_with(t, self.dialect), PREFIX),
            (and_(*whole), WHOLE),
            else_=WORDS,
        )


@dataclass(frozen=True)
class _Statements:
    exact: Select  # every equal name, in rank order
    window: Select  # (id, tier) of the window's matches, in rank order
    # (tier, whether to leave out the window's rows) → the ids of the tier, in rank order
    rest: dict[tuple[int, bool], Select]


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
    window = (
        select(recent.c.id, shape.tier_of(recent.c))
        .where(filters(recent.c), shape.matches(recent.c))
        .order_by(*_sorted_by_recency(recent.c))
    )
    exact = (
        select(Patient.id)
        .where(_LIVE, filters(Patient), Patient.search_name == bindparam("folded", type_=String))
        .order_by(*_sorted_by_recency(Patient))
        .limit(_N)
    )
    live = select(Patient.id).where(_LIVE, filters(Patient))
    tier_of = shape.tier_of(Patient)
    rest = {}
    for tier in shape.tiers():
        if tier == EXACT:
            continue  # the statement above finds every equal name
        if not shape.words:
            matching = live  # filters only
        elif tier == PREFIX:
            matching = live.where(_starts_with(Patient, shape.dialect))
        else:
            matching = _narrowed(live.where(shape.matches(Patient)), shape, tier == WHOLE)
        ordered = matching.where(tier_of == tier).order_by(*_sorted_by_recency(Patient))
        rest[tier, False] = ordered.limit(_N)
        rest[tier, True] = ordered.where(Patient.id.not_in(select(recent.c.id))).limit(_N)
    return _Statements(exact, window, rest)


def _by_name(execute: Execute, query: SearchQuery, dialect: str, want: int, window: int):
    folded = fold_vi(query.q)
    tokens = folded.split()
    looked_up = _word_index_values(tokens)
    shape = _Shape(
        dialect,
        len(tokens),
        query.birth_year is not None,
        bool(query.commune_code),
        looked_up is not None,
    )
    statements = _statements(shape)
    values = {**_name_values(folded), **_filter_values(query), "window": window}
    values.update(looked_up or {})
    found: list[int] = []
    tiers = shape.tiers()
    if tiers[0] == EXACT:
        # Served by the plain name index; even the commonest full name is few enough to sort.
        found += _ids(execute(statements.exact, {**values, "n": want}))
        tiers = tiers[1:]
    if len(found) >= want:
        return found
    in_window: dict[int, list[int]] = {tier: [] for tier in tiers}
    for pid, tier in execute(statements.window, values):
        if tier in in_window:
            in_window[tier].append(pid)
    for tier in tiers:
        missing = want - len(found)
        if missing <= 0:
            break
        seen = in_window[tier][:missing]
        found += seen
        if len(seen) < missing:
            # The window cannot fill this tier: the rest of it comes from the whole table.
            # With none of the tier in the window, the statement need not leave its rows out.
            outside = statements.rest[tier, bool(seen)]
            found += _ids(execute(outside, {**values, "n": missing - len(seen)}))
    return found
