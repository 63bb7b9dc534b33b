"""Properties of the identity-document and phone parsers over any text: each input is either
the canonical number or an InvalidValue naming what is wrong, never another exception; the
canonical number parses to itself; separators never change the result."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from his.errors import InvalidValue
from his.identifiers import (
    cccd_province_codes,
    insurance_number_of,
    parse_bhyt_card,
    parse_cccd,
    parse_cmnd,
    parse_passport,
)
from his.models.patient import Sex
from his.phone import normalise_phone
from tests.properties import BOUNDED

pytestmark = pytest.mark.usefixtures("babel_context")

any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
# Text close to a number: digits, letters, separators and look-alike digits (٣, ２, ²).
near_numbers = st.text(st.sampled_from(list("0123456789 .-+()\tABCDXZabc٣２²\u00a0")), max_size=24)
inputs = any_text | near_numbers
sexes = st.sampled_from([None, *Sex])


def outcome(parse, value, **kwargs):
    """The parsed value, or None when refused; any other exception fails the test."""
    try:
        return parse(value, **kwargs)
    except InvalidValue as error:
        assert str(error)
        return None


@BOUNDED
@given(inputs, st.none() | st.integers(1700, 2400), sexes)
def test_cccd_is_twelve_ascii_digits_of_a_province_or_refused(value, year, sex):
    number = outcome(parse_cccd, value, birth_year=year, sex=sex)
    if number is None:
        return
    assert len(number) == 12 and number.isascii() and number.isdigit()
    assert number[:3] in cccd_province_codes()
    assert parse_cccd(number, birth_year=year, sex=sex) == number


@BOUNDED
@given(
    st.sampled_from(sorted(cccd_province_codes())), st.text("0123456789", min_size=9, max_size=9)
)
def test_cccd_separators_do_not_change_the_number(
    province,
    rest,
):
    number = province + rest
    spaced = f" {number[:3]}.{number[3:6]} {number[6:9]}.{number[9:]} "
    assert parse_cccd(spaced) == parse_cccd(number) == number


@BOUNDED
@given(inputs)
def test_cmnd_is_nine_digits_or_refused(value):
    number = outcome(parse_cmnd, value)
    if number is not None:
        assert len(number) == 9 and number.isascii() and number.isdigit()
        assert parse_cmnd(number) == number


@BOUNDED
@given(inputs)
def test_passport_is_upper_ascii_alphanumeric_or_refused(value):
    number = outcome(parse_passport, value)
    if number is not None:
        assert 5 <= len(number) <= 20 and number.isascii() and number.isalnum()
        assert number == number.upper()
        assert parse_passport(number.lower()) == number


@BOUNDED
@given(inputs)
def test_bhyt_card_is_parsed_to_parts_or_refused(value):
    card = outcome(parse_bhyt_card, value)
    assert insurance_number_of(value) == (card.insurance_number if card else None)
    if card is None:
        return
    assert parse_bhyt_card(card.number) == card
    assert len(card.insurance_number) == 10 and card.insurance_number.isdigit()
    if len(card.number) == 15:
        assert card.number == f"{card.group_code}{card.benefit_level}{card.province_code}" + (
            card.insurance_number
        )
        assert 1 <= card.benefit_level <= 5


@BOUNDED
@given(inputs)
def test_phone_is_national_digits_or_refused(value):
    number = outcome(normalise_phone, value)
    if number is None:
        return
    assert number.isascii() and number.isdigit() and number.startswith("0")
    assert len(number) == (11 if number.startswith("02") else 10)
    assert normalise_phone(number) == number
    assert normalise_phone("+84" + number[1:]) == number
