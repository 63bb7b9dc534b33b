"""VietQR payloads: layout, CRC, published examples, rejected input, bill references, PNG."""

from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing import vietqr
from billing.vietqr import (
    PaymentAccount,
    bill_reference,
    build_payload,
    crc16_ccitt_false,
    parse_bill_reference,
    parse_payload,
    qr_data_uri,
)

# Payloads published with open-source VietQR generators, copied as printed there.
# README.md of github.com/subiz/vietqr: 120 000 VND to account 0011001932418 at BIN 970415,
# note "ung ho lu lut" (static layout aside, the same objects in the same order as ours).
SUBIZ_EXAMPLE = (
    "00020101021238570010A00000072701270006970415011300110019324180208QRIBFTTA"
    "530370454061200005802VN62170813ung ho lu lut6304C15C"
)
# README.md of github.com/duyquoc1508/napas-qr: 10 000 VND to account 224528479 at BIN
# 970416, with a bill number (62/01) besides the purpose of transaction (62/08).
NAPAS_QR_EXAMPLE = (
    "00020101021238530010A0000007270123000697041601092245284790208QRIBFTTA"
    "53037045405100005802VN62340107NPS68690819TRANSFER TO SOMEONE6304AC13"
)

HOSPITAL = PaymentAccount(
    bank_bin="970415",
    account_number="113366668888",
    merchant_name="Bệnh viện Đa khoa",
    city="Hà Nội",
)


def bitwise_crc(data: bytes) -> int:
    """CRC-16/CCITT-FALSE one bit at a time (the module uses a lookup table)."""
    crc = 0xFFFF
    for byte in data:
        for bit in range(7, -1, -1):
            top = (crc >> 15) & 1
            crc = (crc << 1) & 0xFFFF
            if top ^ ((byte >> bit) & 1):
                crc ^= 0x1021
    return crc


def walk(text: str) -> list[tuple[str, str]]:
    """(ID, value) pairs in order, without any checking: ID, 2-digit length, value."""
    pairs = []
    while text:
        length = int(text[2:4])
        pairs.append((text[:2], text[4 : 4 + length]))
        text = text[4 + length :]
    return pairs


def crc_holds(payload: str) -> bool:
    return payload[-8:-4] == "6304" and f"{bitwise_crc(payload[:-4].encode()):04X}" == payload[-4:]


def tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


def with_crc(body: str) -> str:
    """``body`` + ``6304`` + its CRC, for hand-made payloads."""
    body += "6304"
    return f"{body}{bitwise_crc(body.encode()):04X}"


# --- CRC -------------------------------------------------------------------------------


def test_crc_check_value():
    assert crc16_ccitt_false(b"123456789") == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF


@given(st.binary(max_size=300))
def test_crc_matches_bitwise_implementation(data):
    assert crc16_ccitt_false(data) == bitwise_crc(data)


# --- Layout ----------------------------------------------------------------------------


def test_dynamic_payload_field_by_field():
    payload = build_payload(HOSPITAL, 150_000, "HIS91001B42F")

    root = walk(payload)
    assert [tag for tag, _ in root] == ["00", "01", "38", "53", "54", "58", "59", "60", "62", "63"]
    fields = dict(root)
    assert fields["00"] == "01"
    assert fields["01"] == "12"
    assert walk(fields["38"]) == [
        ("00", "A000000727"),
        ("01", "0006970415" + "0112113366668888"),
        ("02", "QRIBFTTA"),
    ]
    assert walk(dict(walk(fields["38"]))["01"]) == [("00", "970415"), ("01", "113366668888")]
    assert fields["53"] == "704"
    assert fields["54"] == "150000"
    assert fields["58"] == "VN"
    assert fields["59"] == "BENH VIEN DA KHOA"
    assert fields["60"] == "HA NOI"
    assert walk(fields["62"]) == [("08", "HIS91001B42F")]
    assert payload.endswith("6304" + fields["63"])
    assert fields["63"] == f"{bitwise_crc(payload[:-4].encode()):04X}"
    assert fields["63"] == fields["63"].upper()

    assert parse_payload(payload) == {
        "00": "01",
        "01": "12",
        "38": {
            "00": "A000000727",
            "01": {"00": "970415", "01": "113366668888"},
            "02": "QRIBFTTA",
        },
        "53": "704",
        "54": "150000",
        "58": "VN",
        "59": "BENH VIEN DA KHOA",
        "60": "HA NOI",
        "62": {"08": "HIS91001B42F"},
        "63": fields["63"],
    }


def test_static_payload_has_no_amount():
    account = PaymentAccount("970436", "0071000123456")
    payload = build_payload(account, None, "HIS91001B7")
    fields = dict(walk(payload))
    assert fields["01"] == "11"
    assert "54" not in fields
    assert "59" not in fields and "60" not in fields
    assert crc_holds(payload)


def test_dynamic_when_amount_given():
    account = PaymentAccount("970436", "0071000123456")
    assert dict(walk(build_payload(account, 1, "x")))["01"] == "12"
    assert dict(walk(build_payload(account, None, "x")))["01"] == "11"


def test_reproduces_published_payload():
    account = PaymentAccount("970415", "0011001932418")
    assert build_payload(account, 120_000, "ung ho lu lut") == SUBIZ_EXAMPLE


@pytest.mark.parametrize("payload", [SUBIZ_EXAMPLE, NAPAS_QR_EXAMPLE])
def test_published_payloads_parse_and_their_crc_holds(payload):
    assert crc_holds(payload)
    parsed = parse_payload(payload)
    assert parsed["00"] == "01"
    assert parsed["38"]["00"] == "A000000727"
    assert parsed["38"]["02"] == "QRIBFTTA"
    assert parsed["53"] == "704"
    assert parsed["58"] == "VN"


def test_napas_qr_example_in_detail():
    parsed = parse_payload(NAPAS_QR_EXAMPLE)
    assert parsed["01"] == "12"
    assert parsed["38"]["01"] == {"00": "970416", "01": "224528479"}
    assert parsed["54"] == "10000"
    assert parsed["62"] == {"01": "NPS6869", "08": "TRANSFER TO SOMEONE"}
    assert parsed["63"] == "AC13"


def test_lower_case_crc_is_read():
    payload = SUBIZ_EXAMPLE[:-4] + SUBIZ_EXAMPLE[-4:].lower()
    assert parse_payload(payload)["63"] == "c15c"


def test_merchant_name_and_city_are_folded_to_ascii():
    account = PaymentAccount(
        "970415", "1", merchant_name="  Bệnh  viện  Đức Giang ", city="Đà Nẵng"
    )
    fields = dict(walk(build_payload(account, None, "r")))
    assert fields["59"] == "BENH VIEN DUC GIANG"
    assert fields["60"] == "DA NANG"


# --- Rejected input --------------------------------------------------------------------


@pytest.mark.parametrize("bank_bin", ["97041", "9704150", "97041A", "", " 970415", "９７０４１５"])
def test_bin_must_be_six_digits(bank_bin):
    with pytest.raises(ValueError, match="bank_bin"):
        PaymentAccount(bank_bin, "113366668888")


@pytest.mark.parametrize("number", ["", "1" * 20, "1133-6666", "1133 6666", "Đ123"])
def test_account_number_must_be_1_to_19_letters_or_digits(number):
    with pytest.raises(ValueError, match="account_number"):
        PaymentAccount("970415", number)


def test_account_number_limits_accepted():
    PaymentAccount("970415", "1")
    PaymentAccount("970415", "A" * 19)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("merchant_name", {"merchant_name": "B" * 26}),
        ("merchant_name", {"merchant_name": "Bệnh viện 医院"}),
        ("merchant_name", {"merchant_name": "   "}),
        ("city", {"city": "Thành phố Hồ Chí Minh"}),  # 21 characters once folded
        ("city", {"city": "Hà Nội €"}),
    ],
)
def test_merchant_name_and_city_rejected(field, kwargs):
    with pytest.raises(ValueError, match=field):
        PaymentAccount("970415", "1", **kwargs)


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (0, "positive"),
        (-1, "positive"),
        (10**13, "digits"),
        (True, "whole number"),
        (1.5, "whole number"),
        ("1000", "whole number"),
    ],
)
def test_bad_amount(amount, message):
    with pytest.raises(ValueError, match=f"amount.*{message}"):
        build_payload(HOSPITAL, amount, "r")


def test_largest_amount_accepted():
    payload = build_payload(HOSPITAL, 10**13 - 1, "r")
    assert parse_payload(payload)["54"] == "9" * 13


@pytest.mark.parametrize(
    "reference",
    ["", "Viện phí", "HIS#42", "HIS_42", "a+b", "tab\there", "line\n", "x" * 26],
)
def test_bad_reference(reference):
    with pytest.raises(ValueError, match="reference"):
        build_payload(HOSPITAL, 1000, reference)


def test_reference_limits_accepted():
    payload = build_payload(HOSPITAL, 1000, "Az09 -./" + "x" * 17)
    assert parse_payload(payload)["62"] == {"08": "Az09 -./" + "x" * 17}


def test_value_longer_than_99_is_rejected():
    assert vietqr._tlv("note", "08", "x" * 99) == "0899" + "x" * 99
    with pytest.raises(ValueError, match=r"note \(ID 08\).*at most 99"):
        vietqr._tlv("note", "08", "x" * 100)


def test_bad_crc_rejected():
    last = SUBIZ_EXAMPLE[-1]
    tampered = SUBIZ_EXAMPLE[:-1] + ("0" if last != "0" else "1")
    with pytest.raises(ValueError, match="CRC mismatch"):
        parse_payload(tampered)
    changed_content = SUBIZ_EXAMPLE.replace("5406120000", "5406990000")
    with pytest.raises(ValueError, match="CRC mismatch"):
        parse_payload(changed_content)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("", "does not end with the CRC"),
        ("000201", "does not end with the CRC"),
        (SUBIZ_EXAMPLE[:-8], "does not end with the CRC"),
        (SUBIZ_EXAMPLE[:-2], "truncated"),
        (SUBIZ_EXAMPLE + "00", "truncated"),
        ("00020163", "truncated"),
        ("0002016304ZZZZ", "4 hex digits"),
        ("000201630312A", "4 hex digits"),
        ("0A0201" + "6304FFFF", "not two digits"),
        ("00X201" + "6304FFFF", "length"),
        ("0000" + "6304FFFF", "length"),
    ],
)
def test_malformed_payload_rejected(payload, message):
    with pytest.raises(ValueError, match=message):
        parse_payload(payload)


def test_crc_not_last_rejected():
    body = "000201" + "6304ABCD" + "5802VN"
    with pytest.raises(ValueError, match="does not end with the CRC"):
        parse_payload(body)


@pytest.mark.parametrize(
    "body",
    [
        "000201" + "5802VN" + "5802VN",
        "000201" + "62180808HIS1B2AA0802xy",  # 62/08 twice
        "000201" + tlv("38", tlv("00", "A000000727") + tlv("01", tlv("00", "970415") * 2)),
    ],
)
def test_duplicate_tag_rejected(body):
    with pytest.raises(ValueError, match="appears twice"):
        parse_payload(with_crc(body))


def test_truncated_sub_template_rejected():
    with pytest.raises(ValueError, match="62: ID 08 is truncated"):
        parse_payload(with_crc("000201" + "6206" + "0809AB"))


# --- Round trip --------------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
REFERENCE_CHARS = ALNUM + " -./"
VIETNAMESE = "ăâđêôơưĂÂĐÊÔƠƯáàảãạếềểễệốồổỗộớờởỡợúùủũụứừửữựíìỉĩịýỳỷỹỵ"

accounts = st.builds(
    PaymentAccount,
    bank_bin=st.text(string.digits, min_size=6, max_size=6),
    account_number=st.text(ALNUM, min_size=1, max_size=19),
    merchant_name=st.none() | st.text(ALNUM + VIETNAMESE, min_size=1, max_size=25),
    city=st.none() | st.text(ALNUM + VIETNAMESE, min_size=1, max_size=15),
)
amounts = st.none() | st.integers(min_value=1, max_value=10**13 - 1)
references = st.text(REFERENCE_CHARS, min_size=1, max_size=25)


@given(accounts, amounts, references)
def test_round_trip(account, amount, reference):
    payload = build_payload(account, amount, reference)
    assert payload.isascii()
    assert crc_holds(payload)
    parsed = parse_payload(payload)
    assert parsed["01"] == ("11" if amount is None else "12")
    assert parsed["38"] == {
        "00": "A000000727",
        "01": {"00": account.bank_bin, "01": account.account_number},
        "02": "QRIBFTTA",
    }
    assert parsed.get("54") == (None if amount is None else str(amount))
    assert ("59" in parsed) == (account.merchant_name is not None)
    assert ("60" in parsed) == (account.city is not None)
    assert parsed["62"] == {"08": reference}
    assert dict(walk(payload))["63"] == parsed["63"]


# --- Bill references ---------------------------------------------------------------------


def test_bill_reference_shape():
    reference = bill_reference("91001", 42)
    assert reference.startswith("HIS91001B42")
    assert len(reference) == len("HIS91001B42") + 1
    assert reference[-1].isalpha() and reference[-1].isupper()
    assert parse_bill_reference(reference) == ("91001", 42)
    assert bill_reference("ab12c", 1).startswith("HISAB12CB1")


@pytest.mark.parametrize(
    "note",
    [
        "{ref}",
        "{ref_lower}",
        "MBVCB.3278123.{ref}.CT tu 0123456789 NGUYEN VAN A toi 113366668888",
        "MBVCB3278123{ref}CT TU 0123456789 NGUYEN VAN A",
        "NGUYEN VAN A chuyen tien {ref} 0912345678",
        "{ref}0912345678",
        "IBFT {ref_spaced}",
        "Thanh toán viện phí - {ref_dotted} - cảm ơn",
    ],
)
def test_reference_found_in_bank_notes(note):
    reference = bill_reference("91001", 42)
    text = note.format(
        ref=reference,
        ref_lower=reference.lower(),
        ref_spaced=f"{reference[:3]} {reference[3:8]} {reference[8:11]} {reference[11:]}",
        ref_dotted=".".join(reference),
    )
    assert parse_bill_reference(text) == ("91001", 42)


def mistypings(digits: str) -> set[str]:
    """Every way to get one digit wrong or swap two neighbours (no leading zero)."""
    wrong = {digits[:i] + d + digits[i + 1 :] for i in range(len(digits)) for d in string.digits}
    swapped = {
        digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :] for i in range(len(digits) - 1)
    }
    return {m for m in wrong | swapped if m != digits and not m.startswith("0")}


@pytest.mark.parametrize("bill_id", [42, 4207, 123456789012345])
def test_mistyped_bill_id_does_not_match(bill_id):
    reference = bill_reference("91001", bill_id)
    check = reference[-1]
    assert parse_bill_reference(reference) == ("91001", bill_id)
    for digits in mistypings(str(bill_id)):
        assert parse_bill_reference(f"HIS91001B{digits}{check}") is None, digits


def test_no_reference():
    assert parse_bill_reference("") is None
    assert parse_bill_reference("CHUYEN TIEN VIEN PHI") is None
    assert parse_bill_reference("HIS91001B") is None
    assert parse_bill_reference("HIS9100B42A") is None


def test_leading_zero_bill_id_is_not_a_reference():
    reference = bill_reference("91001", 42)
    assert parse_bill_reference(reference.replace("B42", "B042")) is None


def test_first_valid_reference_wins():
    first, second = bill_reference("91001", 7), bill_reference("01001", 8)
    wrong = first[:-1] + ("A" if first[-1] != "A" else "B")
    assert parse_bill_reference(f"{wrong} {second} {first}") == ("01001", 8)
    assert parse_bill_reference(f"{first} {second}") == ("91001", 7)


@pytest.mark.parametrize(
    ("facility_code", "bill_id", "field"),
    [
        ("9100", 1, "facility_code"),
        ("910011", 1, "facility_code"),
        ("91-01", 1, "facility_code"),
        (91001, 1, "facility_code"),
        ("91001", 0, "bill_id"),
        ("91001", -5, "bill_id"),
        ("91001", True, "bill_id"),
        ("91001", "42", "bill_id"),
        ("91001", 10**15, "bill_id"),
    ],
)
def test_bad_bill_reference(facility_code, bill_id, field):
    with pytest.raises(ValueError, match=field):
        bill_reference(facility_code, bill_id)


@given(
    st.text(string.ascii_uppercase + string.digits, min_size=5, max_size=5),
    st.integers(min_value=1, max_value=10**15 - 1),
    st.text(string.ascii_uppercase + " .", max_size=20),
    st.text(string.ascii_uppercase + string.digits + " .", max_size=20),
)
def test_bill_reference_round_trip(facility_code, bill_id, before, after):
    reference = bill_reference(facility_code, bill_id)
    assert len(reference) <= 25
    assert reference.startswith(f"HIS{facility_code}B{bill_id}")
    build_payload(PaymentAccount("970415", "1"), 1000, reference)  # a valid transfer note
    assert parse_bill_reference(f"{before} {reference} {after}") == (facility_code, bill_id)


# --- Image --------------------------------------------------------------------------------


def test_data_uri_is_png():
    uri = qr_data_uri(build_payload(HOSPITAL, 150_000, bill_reference("91001", 42)))
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    png = base64.b64decode(uri[len(prefix) :], validate=True)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
