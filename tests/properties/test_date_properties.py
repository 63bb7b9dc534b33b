"""Properties of partial dates of birth over any text and any numbers: a PartialDate or an
InvalidValue, never a ValueError from ``datetime`` or an IndexError; what parses prints back
to itself in both written forms."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from his.errors import InvalidValue
from his.partial_date import MIN_YEAR, PartialDate
from tests.properties import BOUNDED

pytestmark = pytest.mark.usefixtures("babel_context")

TODAY = dt.date(2026, 3, 1)

# Text shaped like dates (so that many examples reach the calendar checks) and any text.
date_like = st.builds(
    lambda a, sep1, b, sep2, c: f"{a}{sep1}{b}{sep2}{c}",
    st.integers(0, 9999).map(str),
    st.sampled_from(["", "-", "/", " ", "."]),
    st.integers(0, 99).map(str),
    st.sampled_from(["", "-", "/"]),
    st.integers(0, 99999).map(str),
)
inputs = date_like | st.text(st.characters(exclude_categories=("Cs",)), max_size=20)


@BOUNDED
@given(inputs)
def test_any_text_is_a_plausible_birth_date_or_refused(text):
    try:
        date = PartialDate.parse(text, today=TODAY)
    except InvalidValue as error:
        assert str(error)
        return
    assert date.year >= MIN_YEAR and date.earliest() <= TODAY
    assert PartialDate.parse(date.iso(), today=TODAY) == date
    assert PartialDate.parse(date.display(), today=TODAY) == date
    assert date.earliest() <= date.latest()


@BOUNDED
@given(st.integers(1, 9999), st.none() | st.integers(-5, 20), st.none() | st.integers(-5, 40))
def test_construction_from_any_numbers_is_a_real_date_or_refused(year, month, day):
    try:
        date = PartialDate(year, month, day)
    except InvalidValue:
        if month is not None and day is not None and 1 <= month <= 12:
            with pytest.raises(ValueError):
                dt.date(year, month, day)
        return
    if date.as_date() is not None:
        assert date.as_date() == dt.date(year, month, day)
    assert date.earliest() <= date.latest()


@BOUNDED
@given(
    st.lists(
        st.builds(
            lambda day, precision: PartialDate(
                day.year, day.month if precision > 0 else None, day.day if precision > 1 else None
            ),
            st.dates(dt.date(1880, 1, 1), TODAY),
            st.integers(0, 2),
        ),
        min_size=2,
        max_size=6,
    )
)
def test_sort_key_orders_by_earliest_possible_day(dates):
    ordered = sorted(dates, key=PartialDate.sort_key)
    earliest = [d.earliest() for d in ordered]
    assert earliest == sorted(earliest)
