"""Properties of FHIR search parameter parsing: any parameter list is a Query or a FhirError
400 (never another exception, which would be a 500); dates of any precision cover a non-empty
range; ``\\,`` escapes survive the value split; the signed paging cursor reads back and any
other text is refused."""

from __future__ import annotations

import datetime as dt
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from his.fhirapi import search, searchparams
from his.fhirapi.outcome import FhirError
from tests.properties import BOUNDED

pytestmark = pytest.mark.usefixtures("babel_context")

TYPES = ["Patient", "Encounter", "Observation", "Condition", "MedicationRequest", "Claim"]
NAMES = sorted(
    {name for t in TYPES for name in searchparams.params_of(t)}
    | set(search.CONTROL)
    | set(search.COMMON)
    | {"unknown", "_has", ""}
)
MODIFIERS = ["", ":missing", ":exact", ":contains", ":not", ":text", ":Patient", ":below", ":x"]
PREFIXES = ["", *search.DATE_PREFIXES, "zz"]

dates = st.builds(
    lambda y, m, d, t: (
        f"{y:04d}"
        + (f"-{m:02d}" if m else "")
        + (f"-{d:02d}" if m and d else "")
        + (t if m and d else "")
    ),
    st.integers(0, 9999),
    st.none() | st.integers(0, 13),
    st.none() | st.integers(0, 32),
    st.sampled_from(
        [
            "",
            "T00:00:00",
            "T23:59:59.999Z",
            "T00:00:00+07:00",
            "T12:00:00-14:00",
            "T25:00",
            "T10:00:00+23:59",
            "Tjunk",
        ]
    ),
)
# Values a client (or an attacker) may send: dates, numbers, tokens, injection, control chars.
values = (
    st.builds(lambda p, d: p + d, st.sampled_from(PREFIXES), dates)
    | st.builds(
        lambda p, n: p + n,
        st.sampled_from(PREFIXES),
        st.sampled_from(["1", "-0.5", "1e999999", "NaN", "Infinity", "9" * 5000, "1,2"]),
    )
    | st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
    | st.sampled_from(
        [
            "' OR 1=1 --",
            "x|y",
            "http://x|",
            "|a",
            "Patient/1",
            "a\\,b,c",
            "true",
            "Patient:link",
            "Encounter:subject:Patient",
            "-_id,birthdate",
            "999999",
        ]
    )
)
params = st.lists(
    st.tuples(
        st.builds(lambda n, m: n + m, st.sampled_from(NAMES), st.sampled_from(MODIFIERS))
        | st.sampled_from(["subject:Patient.name", "subject.identifier", "patient.x.y"]),
        values,
    ),
    max_size=5,
)


@BOUNDED
@given(st.sampled_from(TYPES), params)
def test_any_parameters_are_a_query_or_a_400(resource_type, pairs):
    try:
        query = search.parse(resource_type, pairs)
    except FhirError as error:
        assert error.status == 400 and error.diagnostics
        return
    assert 0 <= query.count <= search.COUNT_MAX
    lenient = search.parse(resource_type, pairs, lenient=True)
    assert len(lenient.criteria) == len(query.criteria)


@BOUNDED
@given(st.sampled_from(TYPES), params)
# Found by tests/security/test_hostile_input.py: a lone backslash made a criterion with no
# value, an empty OR in SQL (a 500).
@example("Patient", [("name", "\\")])
@example("Encounter", [("subject:Patient.name", ",")])
def test_lenient_parsing_refuses_only_what_is_malformed(resource_type, pairs):
    # Lenient mode drops unknown names with a warning; it may still refuse bad values (400).
    try:
        query = search.parse(resource_type, pairs, lenient=True)
    except FhirError as error:
        assert error.status == 400
        return
    for criterion in query.criteria:
        assert criterion.values


@BOUNDED
@given(dates | st.text(max_size=30))
@example("0001-01-01T00:00:00+07:00")  # an instant before year 1 in UTC
@example("9999-12-31T23:59:59-14:00")  # an instant after year 9999 in UTC
def test_a_date_is_a_non_empty_range_or_none(text):
    span = searchparams.parse_date(text)
    if span is None:
        return
    start, end = span
    assert start.tzinfo is not None and end.tzinfo is not None
    assert start < end


@BOUNDED
@given(
    st.lists(
        st.text(st.sampled_from([*string.ascii_letters, ",", " ", "|"]), min_size=1, max_size=8),
        min_size=1,
        max_size=5,
    )
)
def test_escaped_commas_survive_the_value_split(parts):
    joined = ",".join(part.replace("\\", "\\\\").replace(",", "\\,") for part in parts)
    assert search._split(joined) == [p for p in parts if p != ""]


@BOUNDED
@given(
    st.fixed_dictionaries(
        {"r": st.integers(0, 2**62), "m": st.integers(0, 2**62)},
        optional={"k": st.lists(st.text(max_size=5) | st.integers())},
    )
)
def test_a_cursor_reads_back_and_a_changed_one_is_refused(state):
    cursor = search.make_cursor(state)
    assert search.read_cursor(cursor) == state
    signature = cursor.partition(".")[2]
    forged = search.make_cursor({**state, "r": state["r"] + 1}).partition(".")[0]
    with pytest.raises(FhirError):
        search.read_cursor(forged + "." + signature)


@BOUNDED
@given(st.text(max_size=60))
def test_any_other_cursor_text_is_refused_with_a_400(text):
    try:
        state = search.read_cursor(text)
    except FhirError as error:
        assert error.status == 400
        return
    assert isinstance(state, dict)  # only a signed one can get here


def test_instants_beyond_the_calendar_are_no_date_rather_than_a_crash():
    # Found by the property above: an OverflowError, answered 422 problem+json, not 400.
    assert searchparams.parse_date("0001-01-01T00:00:00+07:00") is None
    start, end = searchparams.parse_date("9999")
    assert start < end == dt.datetime.max.replace(tzinfo=dt.UTC)
