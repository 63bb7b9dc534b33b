"""FHIR search over the projection: ``GET /fhir/<type>``, ``POST /fhir/<type>/_search``.

Every search parameter is one ``rid IN (SELECT rid FROM fhir_search_value WHERE ...)``
condition on the parameter's index (``ix_fhir_search_*``): values of one parameter are
OR-ed inside the sub-select, repeated parameters AND-ed as separate sub-selects. The same
SQL runs on SQLite and PostgreSQL.

Paging is keyset paging, never OFFSET. The cursor (signed, in the ``next`` link) holds the
last row's sort keys and ``rid``, and the largest ``rid`` that existed when the first page
was served. ``rid`` never changes and only grows, so following ``next`` returns each
resource that matched at the first page exactly once, even while records are written:
an updated resource keeps its ``rid`` (it is served once, in its current version), a
created one has a larger ``rid`` than the bound and is left for a new search. With
``_sort`` the first page fixes the order of every match (a snapshot of their ``rid``s,
kept a day), so a resource whose sort value changes between two pages is still served
exactly once; beyond ``SNAPSHOT_MAX`` matches the cursor holds the sort keys instead.

``_total``: ``none`` by default (counting every match costs a second query); ``accurate``
and ``estimate`` both count exactly. ``_summary=count`` and ``_count=0`` give the total only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any
from urllib.parse import urlencode

from flask import Response, current_app, request
from flask_babel import gettext as _
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session, aliased

from his.context import db_session
from his.db import utcnow
from his.fhirapi import audit_log, searchparams
from his.fhirapi.blueprint import bp
from his.fhirapi.bundle import Entry, base_url, bundle_text, full_url
from his.fhirapi.outcome import FhirError, issue, operation_outcome
from his.fhirapi.resource_types import PROJECTED, SERVED, require_type
from his.fhirapi.searchparams import (
    DATE,
    NUMBER,
    QUANTITY,
    REFERENCE,
    STRING,
    TOKEN,
    URI,
    Param,
    parse_date,
)
from his.fhirapi.security import FhirAccess, current_access
from his.fhirapi.wire import dumps, is_number, respond
from his.models import FhirResource, FhirSearchSnapshot, FhirSearchValue
from his.text import fold_vi

COUNT_DEFAULT = 20
COUNT_MAX = 1000
INCLUDE_MAX = 1000  # included resources per page, so one page stays one bounded response

# Result parameters: they shape the answer, they do not select resources.
CONTROL = frozenset(
    {
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_total",
        "_summary",
        "_elements",
        "_format",
        "_pretty",
        "_cursor",
    }
)
# Parameters every resource type has, served from fhir_resource itself.
COMMON = {
    "_id": Param("Resource", "_id", TOKEN, ("id",), documentation="Logical id"),
    "_lastUpdated": Param(
        "Resource", "_lastUpdated", DATE, ("meta.lastUpdated",), documentation="meta.lastUpdated"
    ),
}
DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
NUMBER_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {
    TOKEN: {"missing", "not", "text"},
    STRING: {"missing", "exact", "contains"},
    URI: {"missing", "below", "above"},
    DATE: {"missing"},
    NUMBER: {"missing"},
    QUANTITY: {"missing"},
    REFERENCE: {"missing"},  # plus a resource type (:Patient)
}
SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
}
_PREFIX = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)(?=[\d-])")


# --- parsing -------------------------------------------------------------------------


@dataclass
class Criterion:
    """One search parameter occurrence: its values are OR-ed."""

    param: Param
    modifier: str | None
    values: list[str]
    # ``subject:Patient.identifier=...``: (target type, criterion on it), OR-ed
    chain: list[tuple[str, Criterion]] = field(default_factory=list)


@dataclass
class SortKey:
    name: str
    descending: bool
    param: Param | None  # None for _id / _lastUpdated


@dataclass
class Query:
    resource_type: str
    criteria: list[Criterion] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    count: int = COUNT_DEFAULT
    includes: list[tuple[str, str, str | None]] = field(default_factory=list)
    revincludes: list[tuple[str, str, str | None]] = field(default_factory=list)
    total: str = "none"
    summary: str | None = None
    elements: list[str] | None = None
    cursor: str | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    shown: list[tuple[str, str]] = field(default_factory=list)  # the params, for links


def _bad(message: str, name: str) -> FhirError:
    return FhirError(400, message, expression=[name], code="invalid")


def find_param(resource_type: str, name: str) -> Param | None:
    return COMMON.get(name) or searchparams.params_of(resource_type).get(name)


def parse(resource_type: str, params: list[tuple[str, str]], *, lenient: bool = False) -> Query:
    """The request's parameters as a Query; a bad one raises 400, an unknown one too
    unless ``lenient`` (then it is dropped with a warning)."""
    query = Query(resource_type)

    def unknown(message: str, name: str) -> None:
        if not lenient:
            raise _bad(message, name)
        query.warnings.append(issue("warning", "not-supported", message, [name]))

    for key, raw in params:
        value = raw.strip()
        if key == "_cursor":
            query.cursor = value
            continue
        if key in ("_format", "_pretty"):
            query.shown.append((key, raw))
            continue
        base = key.split(":", 1)[0]
        if base in CONTROL:
            query.shown.append((key, raw))
            _parse_control(query, key, value, unknown)
            continue
        if value == "" or not _split(value):
            continue  # FHIR: a parameter without a value ("", ",", a lone "\\") is ignored
        try:
            criterion = _criterion(resource_type, key, value)
        except _Unknown as error:
            unknown(error.message, key)
            continue
        query.criteria.append(criterion)
        query.shown.append((key, raw))
    return query


class _Unknown(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _criterion(resource_type: str, key: str, value: str) -> Criterion:
    head, dot, tail = key.partition(".")
    name, _colon, modifier = head.partition(":")
    found = find_param(resource_type, name)
    if found is None:
        raise _Unknown(
            _("Unknown search parameter %(name)s for %(type)s.")
            % {"name": name, "type": resource_type}
        )
    modifier = modifier or None
    if dot:
        if found.type != REFERENCE:
            raise _bad(
                _("Only reference parameters can be chained: %(name)s.") % {"name": key}, key
            )
        targets = _targets(found, modifier)
        if not targets:
            raise _bad(_("Name the target type to chain %(name)s.") % {"name": key}, key)
        if "." in tail:
            raise _bad(_("Chains of more than one level are not supported."), key)
        chained = []
        for target in targets:
            try:
                chained.append((target, _criterion(target, tail, value)))
            except _Unknown:
                continue
        if not chained:
            raise _Unknown(
                _("Unknown search parameter %(name)s for %(type)s.")
                % {"name": tail, "type": "/".join(targets)}
            )
        # A chain over several possible targets: one criterion per target, OR-ed.
        return Criterion(found, None, [value], chain=chained)
    if modifier is not None:
        allowed = MODIFIERS.get(found.type, {"missing"})
        is_type = found.type == REFERENCE and modifier in (found.targets or SERVED)
        if modifier not in allowed and not is_type:
            raise _bad(
                _("The modifier :%(modifier)s is not supported on %(name)s.")
                % {"modifier": modifier, "name": name},
                key,
            )
    if modifier == "missing" and value not in ("true", "false"):
        raise _bad(_(":missing takes true or false."), key)
    values = _split(value)
    for one in values:
        _check_value(found, modifier, one, key)
    return Criterion(found, modifier, values)


def _targets(p: Param, modifier: str | None) -> tuple[str, ...]:
    if modifier:
        return (modifier,) if modifier in SERVED else ()
    return p.targets


def _split(value: str) -> list[str]:
    """Comma-separated values; ``\\,`` is a literal comma."""
    parts, current, escaped = [], "", False
    for ch in value:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p != ""]


def _check_value(p: Param, modifier: str | None, value: str, key: str) -> None:
    if modifier == "missing":
        return
    if p.type == DATE and _date_value(value) is None:
        raise _bad(
            _("%(name)s takes a date with an optional prefix (ge2020-01-01).") % {"name": key},
            key,
        )
    if p.type in (NUMBER, QUANTITY) and _number_value(value.split("|", 1)[0]) is None:
        raise _bad(_("%(name)s takes a number with an optional prefix.") % {"name": key}, key)


def _parse_control(query: Query, key: str, value: str, unknown) -> None:
    name, _colon, modifier = key.partition(":")
    if name == "_count":
        if not is_number(value):
            raise _bad(_("_count must be a whole number."), "_count")
        query.count = min(int(value), COUNT_MAX)
    elif name == "_total":
        if value not in ("none", "estimate", "accurate"):
            raise _bad(_("_total is none, estimate or accurate."), "_total")
        query.total = value
    elif name == "_summary":
        if value not in ("true", "false", "count", "data", "text"):
            raise _bad(_("_summary is true, false, count, data or text."), "_summary")
        query.summary = None if value == "false" else value
    elif name == "_elements":
        query.elements = [e.strip() for e in value.split(",") if e.strip()]
    elif name == "_sort":
        for item in (v.strip() for v in value.split(",")):
            if not item:
                continue
            descending = item.startswith("-")
            sort_name = item.lstrip("-")
            if sort_name in ("_id", "_lastUpdated"):
                query.sort.append(SortKey(sort_name, descending, None))
                continue
            p = searchparams.params_of(query.resource_type).get(sort_name)
            if p is None:
                unknown(
                    _("Unknown search parameter %(name)s for %(type)s.")
                    % {"name": sort_name, "type": query.resource_type},
                    "_sort",
                )
                continue
            query.sort.append(SortKey(sort_name, descending, p))
    elif name in ("_include", "_revinclude"):
        if modifier not in ("", "iterate", "recurse"):
            raise _bad(_("Unknown modifier of %(name)s.") % {"name": name}, key)
        spec = _include_spec(query.resource_type, name, value, unknown)
        if spec:
            (query.includes if name == "_include" else query.revincludes).append(spec)


def _include_spec(resource_type: str, name: str, value: str, unknown):
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise _bad(_("%(name)s takes Type:parameter[:target].") % {"name": name}, name)
    source, param_name = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if name == "_include" and source != resource_type:
        unknown(
            _("_include must start with the searched type %(type)s.") % {"type": resource_type},
            name,
        )
        return None
    if source not in PROJECTED:
        # AuditEvent and the conformance resources are not in the projection includes read.
        unknown(_("%(type)s cannot be included.") % {"type": source}, name)
        return None
    if param_name != "*":
        p = searchparams.params_of(source).get(param_name)
        if p is None or p.type != REFERENCE:
            unknown(
                _("%(value)s is not a reference parameter.") % {"value": value},
                name,
            )
            return None
    return (source, param_name, target)


# --- conditions ----------------------------------------------------------------------


def _values_of(resource_type: str, name: str, *conditions: ColumnElement) -> Select:
    v = FhirSearchValue
    return select(v.rid).where(v.resource_type == resource_type, v.param == name, *conditions)


def _condition(access: FhirAccess, resource_type: str, c: Criterion) -> ColumnElement[bool]:
    """The criterion as a condition on FhirResource."""
    p = c.param
    if c.chain:
        return _chain_condition(access, resource_type, c)
    if p.name == "_id":
        if c.modifier == "missing":
            return true() if c.values == ["false"] else false()
        ids = [v.split("|")[-1] for v in c.values]
        cond = FhirResource.resource_id.in_(ids)
        return not_(cond) if c.modifier == "not" else cond
    if p.name == "_lastUpdated":
        if c.modifier == "missing":
            return true() if c.values == ["false"] else false()
        return or_(*[_date_condition(FhirResource.last_updated, None, v) for v in c.values])
    if c.modifier == "missing":
        has = FhirResource.rid.in_(_values_of(resource_type, p.name))
        return not_(has) if c.values == ["true"] else has
    if p.type == TOKEN and c.modifier == "not":
        return not_(
            FhirResource.rid.in_(
                _values_of(resource_type, p.name, or_(*[_token(x) for x in c.values]))
            )
        )
    if p.type == REFERENCE and c.modifier:  # :Type
        options = [_reference_value(p, x, c.modifier) for x in c.values]
    else:
        options = [_value_condition(p, c.modifier, x) for x in c.values]
    return FhirResource.rid.in_(_values_of(resource_type, p.name, or_(*options)))


def _value_condition(p: Param, modifier: str | None, value: str) -> ColumnElement[bool]:
    v = FhirSearchValue
    if p.type == TOKEN:
        if modifier == "text":
            return func.lower(v.text).like(_like(value.lower()) + "%", escape="\\")
        return _token(value)
    if p.type == STRING:
        if modifier == "exact":
            return v.exact == unicodedata.normalize("NFC", value)
        folded = fold_vi(value)
        if modifier == "contains":
            return v.text.like("%" + _like(folded) + "%", escape="\\")
        return v.text.like(_like(folded) + "%", escape="\\")
    if p.type == URI:
        if modifier == "below":
            return v.exact.like(_like(value) + "%", escape="\\")
        if modifier == "above":
            return literal(value).like(v.exact + "%")
        return v.exact == value
    if p.type == DATE:
        return _date_condition(v.start, v.end, value)
    if p.type == REFERENCE:
        return _reference_value(p, value, None)
    if p.type in (NUMBER, QUANTITY):
        number, _sep, unit = value.partition("|")
        cond = _number_condition(v.number, number)
        if unit:
            system, _bar, code = unit.partition("|")
            if not _bar:
                code, system = system, ""
            if system:
                cond = and_(cond, v.system == system)
            if code:
                cond = and_(cond, v.code == code)
        return cond
    return false()


def _token(value: str) -> ColumnElement[bool]:
    v = FhirSearchValue
    if "|" not in value:
        return v.code == value
    system, _bar, code = value.partition("|")
    if not system:
        return and_(v.system.is_(None), v.code == code)
    if not code:
        return v.system == system
    return and_(v.code == code, v.system == system)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _reference_value(p: Param, value: str, type_modifier: str | None) -> ColumnElement[bool]:
    v = FhirSearchValue
    ref = value
    if "://" in ref:  # a full URL: keep Type/id
        ref = ref.split("/_history/")[0].rstrip("/")
        parts = ref.split("/")
        ref = "/".join(parts[-2:])
    if "/" in ref:
        return v.reference == ref
    if type_modifier:
        return v.reference == f"{type_modifier}/{ref}"
    if p.targets:
        return v.reference.in_([f"{t}/{ref}" for t in p.targets])
    return v.reference.like("%/" + _like(ref), escape="\\")


def _chain_condition(access: FhirAccess, resource_type: str, c: Criterion) -> ColumnElement[bool]:
    options = []
    for target, chained in c.chain:
        target_rows = (
            select(literal(f"{target}/") + FhirResource.resource_id)
            .where(*scope(access, target), _condition(access, target, chained))
            .correlate(None)  # its own fhir_resource, not the searched row
            .scalar_subquery()
        )
        options.append(FhirSearchValue.reference.in_(target_rows))
    return FhirResource.rid.in_(_values_of(resource_type, c.param.name, or_(*options)))


def _date_value(value: str) -> tuple[str, dt.datetime, dt.datetime] | None:
    match = _PREFIX.match(value)
    prefix = match.group(1) if match else "eq"
    rest = value[len(match.group(1)) :] if match else value
    span = parse_date(rest)
    if span is None:
        return None
    return prefix, span[0], span[1]


def _date_condition(start, end, value: str) -> ColumnElement[bool]:
    """FHIR date semantics between the stored range [start, end) and the parameter's
    range [low, high); ``end`` None means the column is an instant (start + 1 ms)."""
    parsed = _date_value(value)
    assert parsed is not None
    prefix, low, high = parsed
    if end is None:  # an instant column: its range is [start, start]
        end_gt = lambda moment: start >= moment  # noqa: E731
        end_le = lambda moment: start < moment  # noqa: E731
    else:
        end_gt = lambda moment: end > moment  # noqa: E731
        end_le = lambda moment: end <= moment  # noqa: E731
    # start < high follows from the other two; said aloud, it bounds the index range scan.
    within = and_(start >= low, start < high, end_le(high))
    if prefix == "eq":
        return within
    if prefix == "ne":
        return not_(within)
    if prefix == "gt":
        return end_gt(high)
    if prefix == "lt":
        return start < low
    if prefix == "ge":
        return or_(end_gt(high), within)
    if prefix == "le":
        return or_(start < low, within)
    if prefix == "sa":
        return start >= high
    if prefix == "eb":
        return end_le(low)
    # ap: overlaps the parameter widened by a tenth of its distance from now (at least a day)
    now = dt.datetime.now(dt.UTC)
    slack = max(abs(now - low) / 10, dt.timedelta(days=1))
    return and_(start < _shift(high, slack), end_gt(_shift(low, -slack)))


def _shift(moment: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    try:
        return moment + delta
    except OverflowError:
        return dt.datetime.max.replace(tzinfo=dt.UTC) if delta > dt.timedelta(0) else moment


def _number_value(value: str) -> tuple[str, Decimal] | None:
    match = _PREFIX.match(value)
    prefix = match.group(1) if match else "eq"
    rest = value[len(match.group(1)) :] if match else value
    try:
        number = Decimal(rest)
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    return prefix, number


def _number_condition(column, value: str) -> ColumnElement[bool]:
    parsed = _number_value(value)
    assert parsed is not None
    prefix, number = parsed
    # eq means "within the precision given": 100 is [99.5, 100.5)
    exponent = number.as_tuple().exponent
    half = Decimal(1).scaleb(int(exponent)) / 2 if isinstance(exponent, int) else Decimal(0)
    low, high = number - half, number + half
    return {
        "eq": and_(column >= low, column < high),
        "ne": or_(column < low, column >= high),
        "gt": column > number,
        "lt": column < number,
        "ge": column >= number,
        "le": column <= number,
        "sa": column > number,
        "eb": column < number,
        "ap": and_(column >= number * Decimal("0.9"), column <= number * Decimal("1.1")),
    }[prefix]


def scope(access: FhirAccess, resource_type: str) -> list[ColumnElement[bool]]:
    """The rows of this type the caller may see."""
    conditions = [FhirResource.resource_type == resource_type, FhirResource.deleted.is_(False)]
    if access.facility_ids is not None:
        conditions.append(
            or_(
                FhirResource.facility_id.is_(None),
                FhirResource.facility_id.in_(sorted(access.facility_ids)),
            )
        )
    return conditions


def _where(access: FhirAccess, query: Query) -> list[ColumnElement[bool]]:
    return [
        *scope(access, query.resource_type),
        *(_condition(access, query.resource_type, c) for c in query.criteria),
    ]


def matching(
    session: Session, access: FhirAccess, resource_type: str, params: list[tuple[str, str]]
) -> Select:
    """The FhirResource rows of ``resource_type`` the caller may see that match the FHIR
    search ``params`` (no paging, no includes); FhirError(400) on a bad or unknown one.
    For conditional create and ``_typeFilter``."""
    query = parse(resource_type, [(k, v) for k, v in params if k.split(":")[0] not in CONTROL])
    return select(FhirResource).where(*_where(access, query))


# --- sorting and the cursor ----------------------------------------------------------

_SORT_COLUMN = {
    STRING: "text",
    TOKEN: "code",
    DATE: "start",
    REFERENCE: "reference",
    NUMBER: "number",
    QUANTITY: "number",
    URI: "exact",
}


def _sort_expression(resource_type: str, key: SortKey):
    if key.param is None:
        return FhirResource.resource_id if key.name == "_id" else FhirResource.last_updated
    v = aliased(FhirSearchValue)
    column = getattr(v, _SORT_COLUMN.get(key.param.type, "code"))
    # A resource with several values sorts by its smallest (ascending) or largest one.
    aggregate = func.max(column) if key.descending else func.min(column)
    return (
        select(aggregate)
        .where(v.rid == FhirResource.rid, v.resource_type == resource_type, v.param == key.name)
        .scalar_subquery()
    )


def _encode(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"t": value.astimezone(dt.UTC).isoformat()}
    if isinstance(value, Decimal):
        return {"n": str(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "t" in value:
        return dt.datetime.fromisoformat(value["t"])
    if isinstance(value, dict) and "n" in value:
        return Decimal(value["n"])
    return value


def _sign(payload: bytes) -> str:
    key = str(current_app.config.get("SECRET_KEY") or "his-fhir").encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()[:24]


def make_cursor(state: dict[str, Any]) -> str:
    payload = json.dumps(state, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + _sign(payload)


def read_cursor(text: str) -> dict[str, Any]:
    body, _dot, signature = text.partition(".")
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        if not hmac.compare_digest(signature, _sign(payload)):
            raise ValueError("signature")
        state = json.loads(payload)
        keyset = isinstance(state, dict) and isinstance(state.get("r"), int)
        snapshot = (
            isinstance(state, dict)
            and isinstance(state.get("s"), str)
            and isinstance(state.get("p"), int)
        )
        if not (keyset or snapshot):
            raise ValueError("shape")
        return state
    except (ValueError, TypeError) as exc:
        raise _bad(_("The paging cursor is not valid."), "_cursor") from exc


# --- the search ----------------------------------------------------------------------


@dataclass
class Page:
    rows: list[FhirResource]
    more: bool
    cursor: dict[str, Any] | None  # the state for the next page
    total: int | None


def run(session: Session, access: FhirAccess, query: Query) -> Page:
    where = _where(access, query)
    state = read_cursor(query.cursor) if query.cursor else None
    bound = state["m"] if state else session.scalar(select(func.max(FhirResource.rid))) or 0
    where.append(FhirResource.rid <= bound)

    total = None
    if query.total != "none" or query.summary == "count" or query.count == 0:
        total = session.scalar(
            select(func.count()).select_from(select(FhirResource.rid).where(*where).subquery())
        )
    if query.summary == "count" or query.count == 0:
        return Page([], False, None, total)

    limit = query.count + 1
    if state and ("s" in state) != bool(query.sort):
        # A cursor belongs to the search that made it: a sorted one to a sorted search.
        raise _bad(_("The paging cursor is not valid."), "_cursor")
    if not query.sort:
        stmt = select(FhirResource).where(*where)
        if state:
            stmt = stmt.where(FhirResource.rid > state["r"])
        rows = list(session.scalars(stmt.order_by(FhirResource.rid).limit(limit)))
        more = len(rows) > query.count
        rows = rows[: query.count]
        cursor = {"r": rows[-1].rid, "m": bound} if more else None
        return Page(rows, more, cursor, total)

    if state and "s" in state:
        return _snapshot_page(session, where, query, state, total)

    labels = [f"k{i}" for i in range(len(query.sort))]
    inner = (
        select(
            FhirResource.rid.label("rid"),
            *[
                _sort_expression(query.resource_type, key).label(label)
                for key, label in zip(query.sort, labels, strict=True)
            ],
        )
        .where(*where)
        .subquery()
    )
    columns = [inner.c[label] for label in labels]
    stmt = select(FhirResource, *columns).join(inner, inner.c.rid == FhirResource.rid)
    if state:
        stmt = stmt.where(_after(query.sort, columns, state, inner.c.rid))
    order = []
    for key, column in zip(query.sort, columns, strict=True):
        order.append(column.is_(None))  # rows without a value come last, in both directions
        order.append(column.desc() if key.descending else column.asc())
    order.append(inner.c.rid)
    if not state:
        # The first page fixes the order of every match (up to SNAPSHOT_MAX): a record whose
        # sort value changes later can then neither come twice nor be missed.
        rids = list(session.scalars(select(inner.c.rid).order_by(*order).limit(SNAPSHOT_MAX + 1)))
        if len(rids) <= SNAPSHOT_MAX:
            return _first_snapshot_page(session, where, query, rids, bound, total)
    result = list(session.execute(stmt.order_by(*order).limit(limit)))
    more = len(result) > query.count
    result = result[: query.count]
    cursor = None
    if more:
        last = result[-1]
        cursor = {
            "r": last[0].rid,
            "m": bound,
            "k": [_encode(value) for value in last[1:]],
        }
    return Page([r[0] for r in result], more, cursor, total)


# A sorted search with more matches than this pages by its sort keys instead (a record
# whose sort value changes between pages may then move across the cursor).
SNAPSHOT_MAX = 100_000
SNAPSHOT_KEEP = dt.timedelta(hours=24)


def _rows_in_order(session: Session, where, rids: list[int]) -> list[FhirResource]:
    """The current versions of ``rids`` that still match and are visible, in that order."""
    if not rids:
        return []
    found = {
        row.rid: row
        for row in session.scalars(select(FhirResource).where(*where, FhirResource.rid.in_(rids)))
    }
    return [found[rid] for rid in rids if rid in found]


def _first_snapshot_page(session, where, query: Query, rids: list[int], bound, total) -> Page:
    more = len(rids) > query.count
    cursor = None
    if more:
        session.execute(
            delete(FhirSearchSnapshot).where(
                FhirSearchSnapshot.created_at < utcnow() - SNAPSHOT_KEEP
            )
        )
        token = secrets.token_hex(16)
        session.add(
            FhirSearchSnapshot(
                token=token, resource_type=query.resource_type, rids=json.dumps(rids)
            )
        )
        session.flush()
        cursor = {"s": token, "p": query.count, "m": bound}
    return Page(_rows_in_order(session, where, rids[: query.count]), more, cursor, total)


def _snapshot_page(session, where, query: Query, state: dict[str, Any], total) -> Page:
    snapshot = session.get(FhirSearchSnapshot, state["s"])
    if snapshot is None or snapshot.resource_type != query.resource_type:
        raise FhirError(
            410,
            _("These search results have expired: run the search again."),
            code="not-found",
        )
    rids = json.loads(snapshot.rids)
    start = int(state["p"])
    page = rids[start : start + query.count]
    more = start + query.count < len(rids)
    cursor = {"s": snapshot.token, "p": start + query.count, "m": state["m"]} if more else None
    return Page(_rows_in_order(session, where, page), more, cursor, total)


def _after(sort: list[SortKey], columns, state: dict[str, Any], rid) -> ColumnElement[bool]:
    """Rows strictly after the cursor in (keys..., rid) order, nulls last."""
    values = [_decode(v) for v in state.get("k", [])]
    if len(values) != len(sort):
        raise _bad(_("The paging cursor is not valid."), "_cursor")
    options = []
    equal: list[ColumnElement[bool]] = []
    for key, column, value in zip(sort, columns, values, strict=True):
        if value is None:
            equal.append(column.is_(None))
            continue
        beyond = column < value if key.descending else column > value
        options.append(and_(*equal, or_(column.is_(None), beyond)))
        equal.append(column == value)
    options.append(and_(*equal, rid > state["r"]))
    return or_(*options)


# --- includes ------------------------------------------------------------------------


def _visible(access: FhirAccess, resource_type: str):
    return select(FhirResource).where(*scope(access, resource_type))


def includes(
    session: Session, access: FhirAccess, query: Query, rows: list[FhirResource]
) -> list[FhirResource]:
    if not rows or not (query.includes or query.revincludes):
        return []
    rids = [r.rid for r in rows]
    seen = {r.rid for r in rows}
    found: list[FhirResource] = []

    def add(candidates) -> None:
        for row in candidates:
            if row.rid not in seen and len(found) < INCLUDE_MAX:
                seen.add(row.rid)
                found.append(row)

    for source, name, target in query.includes:
        names = (
            [p.name for p in searchparams.params_of(source).values() if p.type == REFERENCE]
            if name == "*"
            else [name]
        )
        refs = session.scalars(
            select(FhirSearchValue.reference).where(
                FhirSearchValue.rid.in_(rids),
                FhirSearchValue.param.in_(names),
                FhirSearchValue.reference.is_not(None),
            )
        ).all()
        by_type: dict[str, set[str]] = {}
        for ref in refs:
            ref_type, _slash, ref_id = ref.partition("/")
            if ref_id and (target is None or ref_type == target):
                by_type.setdefault(ref_type, set()).add(ref_id)
        for ref_type, ids in sorted(by_type.items()):
            if ref_type not in SERVED or not access.allows(ref_type, "r"):
                continue
            add(
                session.scalars(
                    _visible(access, ref_type)
                    .where(FhirResource.resource_id.in_(sorted(ids)))
                    .order_by(FhirResource.rid)
                )
            )
    keys = [f"{r.resource_type}/{r.resource_id}" for r in rows]
    for source, name, target in query.revincludes:
        if source not in SERVED or not access.allows(source, "s"):
            continue
        if target is not None and target != query.resource_type:
            continue
        names = (
            [p.name for p in searchparams.params_of(source).values() if p.type == REFERENCE]
            if name == "*"
            else [name]
        )
        pointing = select(FhirSearchValue.rid).where(
            FhirSearchValue.resource_type == source,
            FhirSearchValue.param.in_(names),
            FhirSearchValue.reference.in_(keys),
        )
        add(
            session.scalars(
                _visible(access, source)
                .where(FhirResource.rid.in_(pointing))
                .order_by(FhirResource.rid)
                .limit(INCLUDE_MAX)
            )
        )
    return found


# --- shaping: _summary, _elements ----------------------------------------------------


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """The top-level elements FHIR marks as summary (isSummary), from the R4B models."""
    import importlib

    try:
        module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
        model = getattr(module, resource_type)
    except (ImportError, AttributeError):
        return frozenset({"id", "meta", "identifier", "status"})
    names = set()
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra or {}
        if isinstance(extra, dict) and extra.get("summary_element_property"):
            names.add(info.alias or name)
    return frozenset(names)


def shape(content: str, query: Query) -> str:
    """The stored JSON unchanged, or cut down for _summary / _elements."""
    if query.summary in (None, "count") and query.elements is None:
        return content
    resource = json.loads(content)
    keep_always = {"resourceType", "id", "meta"}
    if query.summary == "data":
        resource.pop("text", None)
        return dumps(resource)
    if query.summary == "true":
        wanted = summary_elements(resource["resourceType"]) | keep_always
    elif query.summary == "text":
        wanted = keep_always | {"text"}
    else:
        wanted = keep_always | set(query.elements or [])
    cut = {k: v for k, v in resource.items() if k in wanted or _choice_of(k, wanted)}
    meta = dict(cut.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    cut["meta"] = meta
    return dumps(cut)


def _choice_of(key: str, wanted: set[str]) -> bool:
    # value[x]: _elements=value keeps valueQuantity, valueString, ...
    return any(key.startswith(w) and key[len(w) : len(w) + 1].isupper() for w in wanted)


# --- the routes ----------------------------------------------------------------------


def lenient() -> bool:
    prefer = request.headers.get("Prefer", "")
    return any(p.strip() == "handling=lenient" for p in prefer.split(";") + prefer.split(","))


def search_response(resource_type: str, params: list[tuple[str, str]]) -> Response:
    require_type(resource_type)
    access = current_access()
    access.require(resource_type, "s")
    session = db_session()
    query = parse(resource_type, params, lenient=lenient())
    page = run(session, access, query)
    audit_log.search(session, access, resource_type, _patient_of(query), _what(query))

    entries = [
        Entry(full_url(r.resource_type, r.resource_id), shape(r.content, query), "match")
        for r in page.rows
    ]
    if query.summary != "count":
        entries += [
            Entry(full_url(r.resource_type, r.resource_id), r.content, "include")
            for r in includes(session, access, query, page.rows)
        ]
    if query.warnings:
        entries.append(Entry(None, dumps(operation_outcome(query.warnings)), "outcome"))
    base = f"{base_url()}/{resource_type}"
    links = [("self", _link(base, query.shown + _cursor_param(query.cursor)))]
    links.append(("first", _link(base, query.shown)))
    if page.more and page.cursor:
        links.append(("next", _link(base, [*query.shown, ("_cursor", make_cursor(page.cursor))])))
    return respond(bundle_text("searchset", entries, links=links, total=page.total))


def _cursor_param(cursor: str | None) -> list[tuple[str, str]]:
    return [("_cursor", cursor)] if cursor else []


def _link(base: str, params: list[tuple[str, str]]) -> str:
    return base + ("?" + urlencode(params) if params else "")


def _what(query: Query) -> str:
    # Parameter names only: values may be patient data.
    names = sorted({c.param.name for c in query.criteria})
    return ("search " + ",".join(names))[:200]


def _patient_of(query: Query) -> int | None:
    """The patient a search is about, when it names exactly one (for the audit trail)."""
    for c in query.criteria:
        if c.chain or c.modifier or len(c.values) != 1:
            continue
        value = c.values[0]
        if query.resource_type == "Patient" and c.param.name == "_id":
            return int(value) if is_number(value) else None
        if c.param.type == REFERENCE and c.param.name in ("patient", "subject", "beneficiary"):
            ref = value.rsplit("Patient/", 1)[-1]
            if is_number(ref):
                return int(ref)
    return None


@bp.get("/<resource_type>")
def search_type(resource_type: str) -> Response:
    return search_response(resource_type, list(request.args.items(multi=True)))


@bp.post("/<resource_type>/_search")
def search_post(resource_type: str) -> Response:
    mimetype = (request.mimetype or "").lower()
    if request.get_data(cache=True) and mimetype != "application/x-www-form-urlencoded":
        raise FhirError(
            415,
            _("Send the search parameters as application/x-www-form-urlencoded."),
            code="not-supported",
        )
    params = list(request.args.items(multi=True)) + list(request.form.items(multi=True))
    return search_response(resource_type, params)
