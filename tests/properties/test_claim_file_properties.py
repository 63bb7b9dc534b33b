"""Properties of the BHYT claim-file builders: every amount is written with a point and its
fixed places and reads back to the same Decimal (or is refused, never rounded); any text in a
claim either reads back from the file exactly (NFC) or the claim is refused with ClaimError;
tampered files are read or refused with ClaimError, never another exception."""

from __future__ import annotations

import datetime as dt
import unicodedata
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.claims import (
    BirthDate,
    ClaimError,
    build_envelope,
    build_table,
    read_envelope,
    read_table,
)
from billing.claims import formats as f
from tests.billing.test_claim_samples import FACILITY, outpatient_claim
from tests.properties import BOUNDED, scaled

AMOUNT_WRITERS = [
    (f.money, f.MONEY_PLACES),
    (f.quantity, f.QUANTITY_PLACES),
    (f.unit_price, f.UNIT_PRICE_PLACES),
    (f.weight, f.WEIGHT_PLACES),
]
decimals = st.decimals(
    min_value=Decimal("-1e12"), max_value=Decimal("1e12"), allow_nan=False, places=None
) | st.integers(-(10**12), 10**12)


@BOUNDED
@given(st.sampled_from(AMOUNT_WRITERS), decimals)
def test_amounts_read_back_exactly_or_are_refused(writer_places, value):
    writer, places = writer_places
    try:
        written = writer(value)
    except ValueError:
        # Refused only when it has more places than the kind allows.
        assert Decimal(value) != Decimal(value).quantize(Decimal(1).scaleb(-places))
        return
    assert Decimal(written) == Decimal(value)
    assert "E" not in written and "e" not in written
    assert len(written.partition(".")[2]) == places


@BOUNDED
@given(decimals)
def test_percentages_read_back_without_trailing_zeros(value):
    try:
        written = f.percent(value)
    except ValueError:
        return
    assert Decimal(written) == Decimal(value)
    assert "E" not in written
    assert not ("." in written and written.endswith("0"))


@BOUNDED
@given(
    st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)),
    st.integers(0, 2),
    st.none() | st.integers(0, 23),
)
def test_birth_dates_have_twelve_digits_and_keep_what_is_known(day, precision, hour):
    birth = BirthDate(
        day.year,
        day.month if precision else None,
        day.day if precision == 2 else None,
        hour if precision == 2 else None,
    )
    written = f.birth_date12(birth)
    assert len(written) == 12 and written.isdigit()
    assert int(written[:4]) == day.year
    assert int(written[4:6]) == (day.month if precision else 0)


@BOUNDED
@given(st.text(max_size=40))
def test_text_is_nfc_or_refused_when_xml_cannot_carry_it(value):
    try:
        written = f.text(value)
    except ValueError:
        assert any(
            (ord(c) < 0x20 and c not in "\t\n\r")
            or 0xD800 <= ord(c) <= 0xDFFF
            or c in "\ufffe\uffff"
            for c in value
        )
        return
    assert written == unicodedata.normalize("NFC", value)


names = st.text(
    st.characters(exclude_categories=("Cs",)) | st.sampled_from(list("<>&'\"]]>ĐđƯữ\u0301")),
    min_size=1,
    max_size=60,
)


@settings(BOUNDED, max_examples=scaled(60))
@given(names, names)
def test_claim_text_reads_back_from_the_file_or_the_claim_is_refused(name, address):
    claim = outpatient_claim(ho_ten=name, dia_chi=address)
    try:
        xml = build_table("XML1", claim)
    except ClaimError as error:
        assert error.problems
        return
    (row,) = read_table("XML1", xml)
    assert row["HO_TEN"] == unicodedata.normalize("NFC", name)
    assert row["DIA_CHI"] == unicodedata.normalize("NFC", address)


@settings(BOUNDED, max_examples=scaled(30))
@given(names)
def test_the_envelope_carries_each_table_unchanged(name):
    claim = outpatient_claim(ho_ten=name)
    try:
        envelope = build_envelope(FACILITY, claim, dt.date(2026, 11, 28))
    except ClaimError:
        return
    tables = read_envelope(envelope)
    for kind, content in tables.items():
        assert content == build_table(kind, claim)


@pytest.fixture(scope="module")
def xml1() -> bytes:
    return build_table("XML1", outpatient_claim())


@BOUNDED
@given(st.integers(0, 5000), st.binary(min_size=1, max_size=6), st.integers(0, 6))
def test_tampered_tables_are_read_or_refused(xml1, at, noise, dropped):
    at = at % len(xml1)
    tampered = xml1[:at] + noise + xml1[at + dropped :]
    try:
        rows = read_table("XML1", tampered)
    except ClaimError as error:
        assert error.problems
        return
    assert isinstance(rows, list)
