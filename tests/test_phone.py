"""Phone numbers: national-format digits, with a message saying what is wrong."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from his.errors import InvalidValue
from his.phone import normalise_phone
from tests.messages import invalid_message

pytestmark = pytest.mark.usefixtures("babel_context")


def error(value: str) -> str:
    return invalid_message(normalise_phone, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0912345678", "0912345678"),
        ("0912 345 678", "0912345678"),
        ("0912.345.678", "0912345678"),
        ("0912-345-678", "0912345678"),
        ("(091) 234-5678", "0912345678"),
        ("  0362 123 456 ", "0362123456"),
        ("0512345678", "0512345678"),
        ("0712345678", "0712345678"),
        ("0812345678", "0812345678"),
        ("+84912345678", "0912345678"),
        ("+84 912 345 678", "0912345678"),
        ("+ 84 912 345 678", "0912345678"),
        ("+84 (0) 912 345 678", "0912345678"),
        ("84912345678", "0912345678"),
        ("0084912345678", "0912345678"),
        ("00 84 912 345 678", "0912345678"),
        # Landlines: An Giang 0296, Hà Nội 024 (8-digit numbers).
        ("0296 3852 123", "02963852123"),
        ("(0296) 385.2123", "02963852123"),
        ("024 3825 6686", "02438256686"),
        ("+84 24 3825 6686", "02438256686"),
        ("842438256686", "02438256686"),
    ],
)
def test_normalise_phone_valid(value, expected):
    assert normalise_phone(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "The phone number is empty."),
        ("  - ( ) ", "The phone number is empty."),
        ("+", "The phone number is empty."),
        ("0912a45678", "The phone number contains the letter “a”."),
        ("09l2345678", "The phone number contains the letter “l”."),
        (
            "0912/345/678",
            "The phone number contains “/”: use only digits, spaces, dots, dashes, "
            "parentheses and a leading +.",
        ),
        (
            "0912345678 #12",
            "The phone number contains “#”: use only digits, spaces, dots, dashes, "
            "parentheses and a leading +.",
        ),
        ("0912+345678", "A “+” may only stand at the start of the phone number."),
        ("++84912345678", "A “+” may only stand at the start of the phone number."),
        (
            "+1 202 555 0100",
            "Only Vietnamese phone numbers are accepted: after “+” must come 84.",
        ),
        (
            "912345678",
            "The phone number starts with 9: write it with a leading 0 or with +84.",
        ),
        (
            "0",
            "The phone number 0 is too short: a mobile number has 10 digits, a landline 11.",
        ),
        (
            "+84",
            "The phone number 0 is too short: a mobile number has 10 digits, a landline 11.",
        ),
        (
            "091234567",
            "The mobile number 091234567 is too short: it has 9 digits, a mobile number has 10.",
        ),
        (
            "+84 91234567",
            "The mobile number 091234567 is too short: it has 9 digits, a mobile number has 10.",
        ),
        (
            "09123456789",
            "The mobile number 09123456789 is too long: it has 11 digits, a mobile number has 10.",
        ),
        (
            "0296385212",
            "The landline number 0296385212 is too short: it has 10 digits, "
            "a landline number with its area code has 11.",
        ),
        (
            "029638521234",
            "The landline number 029638521234 is too long: it has 12 digits, "
            "a landline number with its area code has 11.",
        ),
        (
            "01234567890",
            "The phone number 01234567890 starts with 01, which is not in use: mobile "
            "numbers start with 03, 05, 07, 08 or 09 and landlines with 02.",
        ),
        (
            "0412345678",
            "The phone number 0412345678 starts with 04, which is not in use: mobile "
            "numbers start with 03, 05, 07, 08 or 09 and landlines with 02.",
        ),
        (
            "0612345678",
            "The phone number 0612345678 starts with 06, which is not in use: mobile "
            "numbers start with 03, 05, 07, 08 or 09 and landlines with 02.",
        ),
        (
            "0012345678",
            "The phone number 0012345678 starts with 00, which is not in use: mobile "
            "numbers start with 03, 05, 07, 08 or 09 and landlines with 02.",
        ),
    ],
)
def test_normalise_phone_invalid(value, message):
    assert error(value) == message


mobiles = st.builds(
    lambda prefix, rest: f"0{prefix}{rest}",
    st.sampled_from("35789"),
    st.text("0123456789", min_size=8, max_size=8),
)
landlines = st.builds(
    lambda rest: f"02{rest}",
    st.text("0123456789", min_size=9, max_size=9),
)
numbers = mobiles | landlines


@st.composite
def written_forms(draw):
    """A valid number as a person might write it: a prefix and separators anywhere."""
    national = draw(numbers)
    prefix = draw(st.sampled_from(["", "+84", "84", "0084", "+84 ", "+84 (0)", "0084 "]))
    digits = national if prefix == "" else national[1:]
    separators = st.sampled_from(["", "", " ", ".", "-"])
    text = prefix + "".join(digit + draw(separators) for digit in digits)
    return national, text


@settings(deadline=None)
@given(written_forms())
def test_every_written_form_normalises_to_the_national_digits(case):
    national, text = case
    assert normalise_phone(text) == national


@settings(deadline=None)
@given(st.text(alphabet="0123456789 +-.()", max_size=16))
def test_normalise_phone_is_idempotent(text):
    try:
        number = normalise_phone(text)
    except InvalidValue:
        return
    assert normalise_phone(number) == number
    assert number.isdigit()
    assert number.startswith("0")
    assert len(number) in (10, 11)
