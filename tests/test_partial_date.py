"""Partial dates of birth: parsing both forms, formatting, and ages that never overstate."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from his.localtime import local_today
from his.partial_date import PartialDate
from tests.messages import invalid_message

TODAY = dt.date(2026, 3, 1)


pytestmark = pytest.mark.usefixtures("babel_context")


error = invalid_message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1990", PartialDate(1990)),
        ("1990-05", PartialDate(1990, 5)),
        ("1990-05-07", PartialDate(1990, 5, 7)),
        ("07/05/1990", PartialDate(1990, 5, 7)),
        ("7/5/1990", PartialDate(1990, 5, 7)),
        ("05/1990", PartialDate(1990, 5)),
        ("5/1990", PartialDate(1990, 5)),
        (" 05/1990 ", PartialDate(1990, 5)),
        ("29/02/2024", PartialDate(2024, 2, 29)),
        ("2000-02-29", PartialDate(2000, 2, 29)),
        ("1880", PartialDate(1880)),
        ("01/03/2026", PartialDate(2026, 3, 1)),  # today
        ("03/2026", PartialDate(2026, 3)),
        ("2026", PartialDate(2026)),
    ],
)
def test_parse_valid(text, expected):
    assert PartialDate.parse(text, today=TODAY) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "The date is empty."),
        ("   ", "The date is empty."),
        ("7.5.1990", "“7.5.1990” is not a date: write it as dd/mm/yyyy, mm/yyyy or yyyy."),
        ("90", "“90” is not a date: write it as dd/mm/yyyy, mm/yyyy or yyyy."),
        ("1990-5-7", "“1990-5-7” is not a date: write it as dd/mm/yyyy, mm/yyyy or yyyy."),
        ("07/05/90", "“07/05/90” is not a date: write it as dd/mm/yyyy, mm/yyyy or yyyy."),
        ("1990/05/07", "“1990/05/07” is not a date: write it as dd/mm/yyyy, mm/yyyy or yyyy."),
        ("ngày 7", "“ngày 7” is not a date: write it as dd/mm/yyyy, mm/yyyy or yyyy."),
        ("١٩٩٠", "“١٩٩٠” is not a date: write it as dd/mm/yyyy, mm/yyyy or yyyy."),
        ("13/1990", "Month 13 does not exist: months go from 1 to 12."),
        ("1990-00", "Month 0 does not exist: months go from 1 to 12."),
        ("07/13/1990", "Month 13 does not exist: months go from 1 to 12."),
        ("31/02/1990", "Day 31 does not exist in 02/1990: that month has 28 days."),
        ("29/02/2023", "Day 29 does not exist in 02/2023: that month has 28 days."),
        ("1900-02-29", "Day 29 does not exist in 02/1900: that month has 28 days."),
        ("31/04/1990", "Day 31 does not exist in 04/1990: that month has 30 days."),
        ("00/04/1990", "Day 0 does not exist in 04/1990: that month has 30 days."),
        (
            "1879",
            "The year 1879 is too early: dates before 1880 are not accepted.",
        ),
        (
            "31/12/0000",
            "The year 0 is too early: dates before 1880 are not accepted.",
        ),
        ("02/03/2026", "The date 02/03/2026 is in the future (today is 01/03/2026)."),
        ("2026-04", "The date 04/2026 is in the future (today is 01/03/2026)."),
        ("2027", "The date 2027 is in the future (today is 01/03/2026)."),
    ],
)
def test_parse_invalid(text, message):
    assert error(PartialDate.parse, text, today=TODAY) == message


def test_parse_defaults_to_local_today():
    today = local_today()
    assert PartialDate.parse(today.isoformat()) == PartialDate(today.year, today.month, today.day)
    tomorrow = today + dt.timedelta(days=1)
    assert "is in the future" in error(PartialDate.parse, tomorrow.isoformat())


def test_construction_checks_the_calendar():
    assert error(PartialDate, 1990, None, 5) == "A day of birth needs a month of birth."
    assert error(PartialDate, 1990, 2, 30) == (
        "Day 30 does not exist in 02/1990: that month has 28 days."
    )


def test_checked_applies_the_range_rules_to_constructed_dates():
    assert PartialDate(1950, 1).checked(today=TODAY) == PartialDate(1950, 1)
    assert error(PartialDate(1850).checked, today=TODAY).startswith("The year 1850")


@pytest.mark.parametrize(
    ("date", "iso", "display"),
    [
        (PartialDate(1990), "1990", "1990"),
        (PartialDate(1990, 5), "1990-05", "05/1990"),
        (PartialDate(1990, 5, 7), "1990-05-07", "07/05/1990"),
        (PartialDate(2001, 12, 31), "2001-12-31", "31/12/2001"),
    ],
)
def test_iso_and_display(date, iso, display):
    assert date.iso() == iso
    assert date.display() == display


def test_as_date_only_when_complete():
    assert PartialDate(1990, 5, 7).as_date() == dt.date(1990, 5, 7)
    assert PartialDate(1990, 5).as_date() is None
    assert PartialDate(1990).as_date() is None


@pytest.mark.parametrize(
    ("date", "on", "age"),
    [
        # The brief's example: born in 2020, maybe on 31/12/2020.
        (PartialDate(2020), dt.date(2026, 3, 1), 5),
        (PartialDate(2020), dt.date(2026, 12, 30), 5),
        (PartialDate(2020), dt.date(2026, 12, 31), 6),
        (PartialDate(2020, 3), dt.date(2026, 3, 30), 5),
        (PartialDate(2020, 3), dt.date(2026, 3, 31), 6),
        (PartialDate(2020, 2), dt.date(2026, 2, 27), 5),
        (PartialDate(2020, 2), dt.date(2026, 2, 28), 5),  # may be born on 29/02/2020
        (PartialDate(2020, 2), dt.date(2026, 3, 1), 6),
        (PartialDate(2020, 3, 1), dt.date(2026, 3, 1), 6),
        (PartialDate(2020, 3, 1), dt.date(2026, 2, 28), 5),
        (PartialDate(2020, 2, 29), dt.date(2021, 2, 28), 0),
        (PartialDate(2020, 2, 29), dt.date(2021, 3, 1), 1),
        (PartialDate(2020, 2, 29), dt.date(2024, 2, 29), 4),
        (PartialDate(2026), dt.date(2026, 3, 1), 0),  # born this year: not -1
        (PartialDate(2026, 3, 1), dt.date(2026, 3, 1), 0),
        (PartialDate(1940), dt.date(2026, 3, 1), 85),
    ],
)
def test_age_on(date, on, age):
    assert date.age_on(on) == age


@pytest.mark.parametrize(
    ("date", "on", "months"),
    [
        (PartialDate(2025), dt.date(2026, 3, 1), 2),  # maybe born 31/12/2025
        (PartialDate(2025, 6), dt.date(2026, 3, 1), 8),  # maybe born 30/06/2025
        (PartialDate(2025, 6), dt.date(2026, 3, 30), 9),
        (PartialDate(2025, 6, 15), dt.date(2026, 3, 14), 8),
        (PartialDate(2025, 6, 15), dt.date(2026, 3, 15), 9),
        (PartialDate(2026, 1, 31), dt.date(2026, 2, 28), 0),
        (PartialDate(2026, 1, 31), dt.date(2026, 3, 1), 1),
        (PartialDate(2026, 3, 1), dt.date(2026, 3, 1), 0),
        (PartialDate(2026), dt.date(2026, 3, 1), 0),
        (PartialDate(2020), dt.date(2026, 3, 1), 62),
    ],
)
def test_months_on(date, on, months):
    assert date.months_on(on) == months


def test_age_before_birth_is_an_error():
    message = "The date 31/12/2019 is before the date of birth 2020."
    assert error(PartialDate(2020).age_on, dt.date(2019, 12, 31)) == message
    assert error(PartialDate(2020).months_on, dt.date(2019, 12, 31)) == message
    assert error(PartialDate(2020, 5, 7).age_on, dt.date(2020, 5, 6)) == (
        "The date 06/05/2020 is before the date of birth 07/05/2020."
    )


def test_ordering_and_sort_key():
    assert PartialDate(1990) < PartialDate(1991)
    assert PartialDate(1990, 1) < PartialDate(1990, 2)
    assert PartialDate(1990, 1, 31) < PartialDate(1990, 2, 1)
    mixed = [PartialDate(1990, 5), PartialDate(1990), PartialDate(1989, 12, 31)]
    assert sorted(mixed, key=PartialDate.sort_key) == [
        PartialDate(1989, 12, 31),
        PartialDate(1990),
        PartialDate(1990, 5),
    ]


def test_is_frozen_and_hashable():
    date = PartialDate(1990, 5)
    with pytest.raises(AttributeError):
        date.year = 1991  # type: ignore[misc]
    assert len({date, PartialDate(1990, 5)}) == 1


@st.composite
def partial_dates(draw):
    day = draw(st.dates(min_value=dt.date(1880, 1, 1), max_value=TODAY))
    precision = draw(st.sampled_from(["year", "month", "day"]))
    if precision == "year":
        return PartialDate(day.year)
    if precision == "month":
        return PartialDate(day.year, day.month)
    return PartialDate(day.year, day.month, day.day)


@settings(deadline=None)
@given(partial_dates())
def test_iso_and_display_round_trip(date):
    assert PartialDate.parse(date.iso(), today=TODAY) == date
    assert PartialDate.parse(date.display(), today=TODAY) == date


@settings(deadline=None)
@given(st.dates(min_value=dt.date(1880, 1, 1), max_value=TODAY))
def test_unpadded_display_form_parses(day):
    text = f"{day.day}/{day.month}/{day.year}"
    assert PartialDate.parse(text, today=TODAY).as_date() == day


@settings(deadline=None)
@given(partial_dates(), st.dates(min_value=dt.date(1880, 1, 1), max_value=dt.date(2200, 1, 1)))
def test_age_never_exceeds_that_of_any_possible_birth_date(date, on):
    if on < date.earliest():
        return
    latest = date.latest()
    if on >= latest:
        # The same as for the latest complete date the partial one may stand for.
        complete = PartialDate(latest.year, latest.month, latest.day)
        assert date.age_on(on) == complete.age_on(on)
        assert date.months_on(on) == complete.months_on(on)
    else:
        assert date.age_on(on) == 0
        assert date.months_on(on) == 0
    # Never older than if born on the earliest possible day.
    earliest = date.earliest()
    assert date.age_on(on) <= PartialDate(earliest.year, earliest.month, earliest.day).age_on(on)
    assert 12 * date.age_on(on) <= date.months_on(on) < 12 * (date.age_on(on) + 1)
