"""CCCD, CMND, passport and BHYT card numbers: format checks with messages naming the part."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from his.errors import InvalidValue
from his.identifiers import (
    BhytCard,
    cccd_birth_century_sex,
    cccd_province_codes,
    parse_bhyt_card,
    parse_cccd,
    parse_cmnd,
    parse_passport,
)
from his.models.patient import Sex
from tests.messages import invalid_message

pytestmark = pytest.mark.usefixtures("babel_context")


error = invalid_message


# --- CCCD -------------------------------------------------------------------------------


def test_province_code_table():
    raw = json.loads(resources.files("his.data").joinpath("cccd_province_codes.json").read_text())
    assert "[verify]" in raw["_about"]
    codes = cccd_province_codes()
    assert len(codes) == 63
    assert all(len(code) == 3 and code.isdigit() for code in codes)
    assert codes["001"] == "Hà Nội"
    assert codes["079"] == "Hồ Chí Minh"
    assert codes["089"] == "An Giang"
    assert codes["091"] == "Kiên Giang"
    assert "003" not in codes
    assert "097" not in codes


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        ("079090001234", {}, "079090001234"),
        ("079 090 001 234", {}, "079090001234"),
        ("079.090.001.234", {}, "079090001234"),
        (" 079090001234\t", {}, "079090001234"),
        ("079090001234", {"birth_year": 1990, "sex": Sex.MALE}, "079090001234"),
        ("001190012345", {"birth_year": 1990, "sex": Sex.FEMALE}, "001190012345"),
        ("089205000001", {"birth_year": 2005, "sex": Sex.MALE}, "089205000001"),
        ("089319000001", {"birth_year": 2019, "sex": Sex.FEMALE}, "089319000001"),
        ("096899000001", {"birth_year": 1899, "sex": Sex.MALE}, "096899000001"),
        ("096401000001", {"birth_year": 2101}, "096401000001"),
        ("096790000001", {"birth_year": 2290}, "096790000001"),
        ("001190012345", {"sex": Sex.UNDETERMINED}, "001190012345"),
        ("001090012345", {"sex": Sex.UNDETERMINED}, "001090012345"),
        ("001090012345", {"sex": None, "birth_year": None}, "001090012345"),
    ],
)
def test_parse_cccd_valid(value, kwargs, expected):
    assert parse_cccd(value, **kwargs) == expected


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [
        ("", {}, "The citizen ID number is empty."),
        (" . ", {}, "The citizen ID number is empty."),
        ("07909O001234", {}, "Character 6 of the citizen ID number (“O”) is not a digit."),
        ("079-090-001234", {}, "Character 4 of the citizen ID number (“-”) is not a digit."),
        ("07909000123", {}, "The citizen ID number must have 12 digits, not 11."),
        ("0790900012345", {}, "The citizen ID number must have 12 digits, not 13."),
        ("123456789", {}, "The citizen ID number must have 12 digits, not 9."),
        (
            "003090001234",
            {},
            "Digits 1–3 of the citizen ID number (003) are not a province code.",
        ),
        (
            "097090001234",
            {},
            "Digits 1–3 of the citizen ID number (097) are not a province code.",
        ),
        (
            "079005001234",
            {"birth_year": 2005},
            "Digit 4 of the citizen ID number (0) means born in 1900–1999, "
            "but the year of birth is 2005.",
        ),
        (
            "079390001234",
            {"birth_year": 1990},
            "Digit 4 of the citizen ID number (3) means born in 2000–2099, "
            "but the year of birth is 1990.",
        ),
        (
            "079891001234",
            {"birth_year": 1991},
            "Digit 4 of the citizen ID number (8) means born in 1800–1899, "
            "but the year of birth is 1991.",
        ),
        (
            "079091001234",
            {"birth_year": 1990},
            "Digits 5–6 of the citizen ID number (91) must be the last two digits "
            "of the year of birth 1990.",
        ),
        (
            "079209001234",
            {"birth_year": 2008},
            "Digits 5–6 of the citizen ID number (09) must be the last two digits "
            "of the year of birth 2008.",
        ),
        (
            "079190001234",
            {"sex": Sex.MALE},
            "Digit 4 of the citizen ID number (1) is odd, which means female, "
            "but the patient is recorded as male.",
        ),
        (
            "079290001234",
            {"sex": Sex.FEMALE},
            "Digit 4 of the citizen ID number (2) is even, which means male, "
            "but the patient is recorded as female.",
        ),
    ],
)
def test_parse_cccd_invalid(value, kwargs, message):
    assert error(parse_cccd, value, **kwargs) == message


def test_cccd_checks_come_in_order_province_then_century_then_year_then_sex():
    # Both the year digits and the sex are wrong: the year is reported first.
    assert error(parse_cccd, "079191001234", birth_year=1990, sex=Sex.MALE).startswith("Digits 5–6")


def test_message_is_lazy_with_named_arguments():
    with pytest.raises(InvalidValue) as excinfo:
        parse_cccd("07909000123")
    lazy = excinfo.value.message
    assert lazy._args == ("The citizen ID number must have 12 digits, not %(count)s.",)
    assert lazy._kwargs == {"count": 11}
    assert str(excinfo.value) == str(lazy)


@pytest.mark.parametrize(
    ("cccd", "expected"),
    [
        ("079090001234", (1900, Sex.MALE)),
        ("079190001234", (1900, Sex.FEMALE)),
        ("079205001234", (2000, Sex.MALE)),
        ("079305001234", (2000, Sex.FEMALE)),
        ("079400001234", (2100, Sex.MALE)),
        ("079500001234", (2100, Sex.FEMALE)),
        ("079600001234", (2200, Sex.MALE)),
        ("079700001234", (2200, Sex.FEMALE)),
        ("079899001234", (1800, Sex.MALE)),
        ("079 999 001 234", (1800, Sex.FEMALE)),
    ],
)
def test_cccd_birth_century_sex(cccd, expected):
    assert cccd_birth_century_sex(cccd) == expected


def test_cccd_birth_century_sex_checks_the_number():
    assert error(cccd_birth_century_sex, "12345") == (
        "The citizen ID number must have 12 digits, not 5."
    )


_CENTURY_DIGIT = {1800: 8, 1900: 0, 2000: 2, 2100: 4, 2200: 6}


def make_cccd(province: str, birth_year: int, sex: Sex, tail: str) -> str:
    digit = _CENTURY_DIGIT[birth_year // 100 * 100] + (sex is Sex.FEMALE)
    return f"{province}{digit}{birth_year % 100:02d}{tail}"


cccds = st.builds(
    lambda province, year, sex, tail: (make_cccd(province, year, sex, tail), year, sex),
    st.sampled_from(sorted(cccd_province_codes())),
    st.integers(1800, 2299),
    st.sampled_from([Sex.MALE, Sex.FEMALE]),
    st.text("0123456789", min_size=6, max_size=6),
)


@settings(deadline=None)
@given(cccds, st.sampled_from(["", " ", "."]))
def test_every_well_formed_cccd_parses_and_round_trips(generated, separator):
    number, year, sex = generated
    spaced = separator.join([number[:3], number[3:6], number[6:]])
    assert parse_cccd(spaced, birth_year=year, sex=sex) == number
    assert parse_cccd(number) == number
    assert cccd_birth_century_sex(number) == (year // 100 * 100, sex)


@settings(deadline=None)
@given(cccds, st.integers(1800, 2299))
def test_a_cccd_accepts_only_its_own_birth_year(generated, other_year):
    number, year, _ = generated
    if other_year == year:
        assert parse_cccd(number, birth_year=other_year) == number
    else:
        with pytest.raises(InvalidValue):
            parse_cccd(number, birth_year=other_year)


@settings(deadline=None)
@given(cccds)
def test_a_cccd_rejects_the_other_sex(generated):
    number, _, sex = generated
    other = Sex.FEMALE if sex is Sex.MALE else Sex.MALE
    with pytest.raises(InvalidValue):
        parse_cccd(number, sex=other)
    assert parse_cccd(number, sex=Sex.UNDETERMINED) == number


# --- CMND -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("023456789", "023456789"), ("023 456 789", "023456789"), ("023.456.789", "023456789")],
)
def test_parse_cmnd_valid(value, expected):
    assert parse_cmnd(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "The old identity card number is empty."),
        ("02345678A", "Character 9 of the old identity card number (“A”) is not a digit."),
        ("02345678", "The old identity card number must have 9 digits, not 8."),
        ("079090001234", "The old identity card number must have 9 digits, not 12."),
    ],
)
def test_parse_cmnd_invalid(value, message):
    assert error(parse_cmnd, value) == message


# --- Passport ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("C1234567", "C1234567"),
        ("c1234567", "C1234567"),
        (" B 1234567 ", "B1234567"),
        ("X1234", "X1234"),
        ("123456789", "123456789"),
        ("AB" * 10, "AB" * 10),
    ],
)
def test_parse_passport_valid(value, expected):
    assert parse_passport(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "The passport number is empty."),
        (
            "C123-4567",
            "Character 5 of the passport number (“-”) is not allowed: "
            "use only letters A–Z and digits.",
        ),
        (
            "đ1234567",
            "Character 1 of the passport number (“Đ”) is not allowed: "
            "use only letters A–Z and digits.",
        ),
        ("C123", "The passport number must have 5 to 20 letters and digits, not 4."),
        ("A" * 21, "The passport number must have 5 to 20 letters and digits, not 21."),
    ],
)
def test_parse_passport_invalid(value, message):
    assert error(parse_passport, value) == message


# --- BHYT card --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "HS4010120878811",
            BhytCard("HS4010120878811", "0120878811", "HS", 4, "01"),
        ),
        (
            "hs 4 01 0120878811",
            BhytCard("HS4010120878811", "0120878811", "HS", 4, "01"),
        ),
        (
            "TE1790123456789",
            BhytCard("TE1790123456789", "0123456789", "TE", 1, "79"),
        ),
        # A group code that no list holds is still well formed: existence is checked elsewhere.
        (
            "ZZ5970123456789",
            BhytCard("ZZ5970123456789", "0123456789", "ZZ", 5, "97"),
        ),
        ("7912058865", BhytCard("7912058865", "7912058865", None, None, None)),
        (" 791 205 8865 ", BhytCard("7912058865", "7912058865", None, None, None)),
    ],
)
def test_parse_bhyt_card_valid(value, expected):
    assert parse_bhyt_card(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "The health insurance card number is empty."),
        (
            "79120588",
            "The health insurance card number must have 15 characters (or the 10 digits of "
            "the social insurance number), not 8.",
        ),
        (
            "079090001234",
            "The health insurance card number must have 15 characters (or the 10 digits of "
            "the social insurance number), not 12.",
        ),
        (
            "791205886O",
            "Character 10 of the 10-digit social insurance number (“O”) is not a digit.",
        ),
        (
            "H54010120878811",
            "Characters 1–2 of the health insurance card number (H5) must be two letters, "
            "the beneficiary group.",
        ),
        (
            "ĐT4010120878811",
            "Characters 1–2 of the health insurance card number (ĐT) must be two letters, "
            "the beneficiary group.",
        ),
        (
            "HS6010120878811",
            "Character 3 of the health insurance card number (6) must be the benefit level, "
            "a digit from 1 to 5.",
        ),
        (
            "HS0010120878811",
            "Character 3 of the health insurance card number (0) must be the benefit level, "
            "a digit from 1 to 5.",
        ),
        (
            "HSX010120878811",
            "Character 3 of the health insurance card number (X) must be the benefit level, "
            "a digit from 1 to 5.",
        ),
        (
            "HS4O10120878811",
            "Characters 4–5 of the health insurance card number (O1) must be the two-digit "
            "province code.",
        ),
        (
            "HS401012087881I",
            "Characters 6–15 of the health insurance card number (012087881I) must be the "
            "10-digit social insurance number.",
        ),
    ],
)
def test_parse_bhyt_card_invalid(value, message):
    assert error(parse_bhyt_card, value) == message


bhyt_codes = st.tuples(
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2),
    st.integers(1, 5),
    st.text("0123456789", min_size=2, max_size=2),
    st.text("0123456789", min_size=10, max_size=10),
)


@settings(deadline=None)
@given(bhyt_codes, st.booleans())
def test_every_well_formed_bhyt_code_parses_and_round_trips(parts, lower):
    group, level, province, insurance = parts
    code = f"{group}{level}{province}{insurance}"
    card = parse_bhyt_card(code.lower() if lower else code)
    assert card == BhytCard(code, insurance, group, level, province)
    assert parse_bhyt_card(card.number) == card
    assert parse_bhyt_card(card.insurance_number).insurance_number == insurance
