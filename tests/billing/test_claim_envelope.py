"""The GIAMDINHHS envelope and the facility's signature: round trips to the exact table bytes,
a schema that fails when it should, and a signature that breaks with one changed byte."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from billing.claims import (
    ClaimError,
    build_check_in,
    build_envelope,
    build_table,
    make_test_certificate,
    read_envelope,
    sign_envelope,
    validate_envelope,
    validate_table,
    verify_envelope,
)
from tests.billing.test_claim_samples import (
    FACILITY,
    inpatient_claim,
    outpatient_check_in,
    outpatient_claim,
)

CREATED = dt.date(2026, 11, 27)
DS = "{http://www.w3.org/2000/09/xmldsig#}"


@pytest.fixture(scope="module")
def facility_keys() -> tuple[bytes, bytes]:
    return make_test_certificate(FACILITY, "Bệnh viện Đa khoa Hà Nội")


@pytest.fixture(scope="module")
def other_keys() -> tuple[bytes, bytes]:
    return make_test_certificate("01002", "Bệnh viện khác")


@pytest.fixture(scope="module")
def envelope() -> bytes:
    return build_envelope(FACILITY, outpatient_claim(), CREATED)


@pytest.fixture(scope="module")
def signed(envelope, facility_keys) -> bytes:
    key_pem, cert_pem = facility_keys
    return sign_envelope(envelope, key_pem, cert_pem)


# --- the envelope -----------------------------------------------------------------------------


def test_the_envelope_holds_the_facility_the_date_one_visit_and_an_empty_signature_place(
    envelope,
):
    assert envelope.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<GIAMDINHHS>')
    validate_envelope(envelope)
    root = etree.fromstring(envelope)
    assert [child.tag for child in root] == ["THONGTINDONVI", "THONGTINHOSO", "CHUKYDONVI"]
    assert root.findtext("THONGTINDONVI/MACSKCB") == "01001"
    assert root.findtext("THONGTINHOSO/NGAYLAP") == "20261127"
    assert root.findtext("THONGTINHOSO/SOLUONGHOSO") == "1"
    files = root.findall("THONGTINHOSO/DANHSACHHOSO/HOSO/FILEHOSO")
    assert [file.findtext("LOAIHOSO") for file in files] == ["XML1", "XML2", "XML3", "XML4"]
    assert len(root.find("CHUKYDONVI")) == 0


def test_each_file_decodes_to_the_exact_table_bytes(envelope):
    claim = outpatient_claim()
    root = etree.fromstring(envelope)
    for file in root.iterfind("THONGTINHOSO/DANHSACHHOSO/HOSO/FILEHOSO"):
        kind = file.findtext("LOAIHOSO")
        content = base64.b64decode(file.findtext("NOIDUNGFILE"), validate=True)
        assert content == build_table(kind, claim)
        validate_table(kind, content)


@pytest.mark.parametrize(
    ("claim", "kinds"),
    [
        (outpatient_claim(), ["XML1", "XML2", "XML3", "XML4"]),
        (inpatient_claim(), ["XML1", "XML2", "XML3", "XML5"]),
    ],
    ids=["out", "in"],
)
def test_reading_the_envelope_gives_back_each_table(claim, kinds):
    tables = read_envelope(build_envelope(FACILITY, claim, CREATED))
    assert list(tables) == kinds
    assert tables == {kind: build_table(kind, claim) for kind in kinds}


def test_the_tables_may_be_chosen_and_are_sent_in_order():
    tables = read_envelope(build_envelope(FACILITY, outpatient_claim(), CREATED, ["XML3", "XML1"]))
    assert list(tables) == ["XML1", "XML3"]


@pytest.mark.parametrize(
    ("facility", "tables", "problem"),
    [
        ("01002", None, "GIAMDINHHS MACSKCB: '01002', but the claim is of '01001'"),
        (FACILITY, ["XML0", "XML1"], "GIAMDINHHS: XML0 is not sent in the envelope"),
        (FACILITY, ["XML1", "XML9"], "GIAMDINHHS: no such table XML9"),
        (FACILITY, ["XML2"], "GIAMDINHHS: XML1 is in every envelope"),
        (FACILITY, ["XML1", "XML1"], "GIAMDINHHS: each table once"),
    ],
)
def test_envelopes_that_cannot_be_sent_are_refused(facility, tables, problem):
    with pytest.raises(ClaimError) as error:
        build_envelope(facility, outpatient_claim(), CREATED, tables)
    assert any(found.startswith(problem) for found in error.value.problems)


def test_a_claim_with_a_problem_gets_no_envelope():
    claim = dataclasses.replace(outpatient_claim(), results=())
    claim = dataclasses.replace(
        claim, summary=dataclasses.replace(claim.summary, t_thuoc=claim.summary.t_thuoc + 1)
    )
    with pytest.raises(ClaimError, match="XML1 T_THUOC"):
        build_envelope(FACILITY, claim, CREATED)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"<NGAYLAP>20261127</NGAYLAP>", b"<NGAYLAP>2026112</NGAYLAP>"),
        (b"<LOAIHOSO>XML2</LOAIHOSO>", b"<LOAIHOSO>XML0</LOAIHOSO>"),
        (b"<LOAIHOSO>XML2</LOAIHOSO>", b"<LOAIHOSO>XML1</LOAIHOSO>"),  # a table twice
        (b"<NOIDUNGFILE>PD94", b"<NOIDUNGFILE>*PD94"),
        (b"<MACSKCB>01001</MACSKCB>", b"<MACSKCB>1001</MACSKCB>"),
        (b"  <CHUKYDONVI/>\n", b""),
    ],
)
def test_the_envelope_schema_rejects_hand_broken_envelopes(envelope, old, new):
    assert old in envelope
    with pytest.raises(ClaimError):
        validate_envelope(envelope.replace(old, new, 1))


def test_an_envelope_of_two_visits_is_not_read_as_one(envelope):
    root = etree.fromstring(envelope)
    visits = root.find("THONGTINHOSO/DANHSACHHOSO")
    visits.append(etree.fromstring(etree.tostring(visits[0])))
    with pytest.raises(ClaimError, match="one visit per file"):
        read_envelope(etree.tostring(root))


# --- the signature ----------------------------------------------------------------------------


def test_the_signature_verifies_and_the_envelope_still_reads(envelope, signed, facility_keys):
    _, cert_pem = facility_keys
    validate_envelope(signed)  # the schema allows the ds:Signature in CHUKYDONVI
    verified = verify_envelope(signed, cert_pem)
    assert read_envelope(verified) == read_envelope(envelope)
    assert read_envelope(signed) == read_envelope(envelope)
    # What was verified is the envelope as built: its CHUKYDONVI is empty again.
    assert len(etree.fromstring(verified).find("CHUKYDONVI")) == 0


def test_the_signature_is_rsa_sha256_in_chukydonvi_with_the_certificate(signed, facility_keys):
    _, cert_pem = facility_keys
    root = etree.fromstring(signed)
    [signature] = root.find("CHUKYDONVI")
    assert signature.tag == f"{DS}Signature"
    assert root[-1].tag == "CHUKYDONVI"
    info = signature.find(f"{DS}SignedInfo")
    assert info.find(f"{DS}CanonicalizationMethod").get("Algorithm") == (
        "http://www.w3.org/2001/10/xml-exc-c14n#"
    )
    assert info.find(f"{DS}SignatureMethod").get("Algorithm") == (
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    )
    [reference] = info.findall(f"{DS}Reference")
    assert reference.get("URI") == ""  # the whole envelope
    assert [transform.get("Algorithm") for transform in reference.find(f"{DS}Transforms")] == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
    ]
    assert reference.find(f"{DS}DigestMethod").get("Algorithm") == (
        "http://www.w3.org/2001/04/xmlenc#sha256"
    )
    embedded = signature.findtext(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
    certificate = x509.load_pem_x509_certificate(cert_pem)
    assert base64.b64decode(embedded) == certificate.public_bytes(serialization.Encoding.DER)


def test_one_changed_byte_of_a_table_breaks_the_signature(signed, facility_keys):
    _, cert_pem = facility_keys
    start = signed.index(b"<NOIDUNGFILE>") + len(b"<NOIDUNGFILE>") + 100
    changed = b"B" if signed[start : start + 1] != b"B" else b"C"
    tampered = signed[:start] + changed + signed[start + 1 :]
    read_envelope(tampered)  # still a well-formed, valid envelope
    with pytest.raises(ClaimError, match="signature"):
        verify_envelope(tampered, cert_pem)


def test_another_certificate_does_not_verify(signed, other_keys):
    _, other_cert = other_keys
    with pytest.raises(ClaimError, match="signature"):
        verify_envelope(signed, other_cert)


def test_an_unsigned_envelope_does_not_verify(envelope, facility_keys):
    _, cert_pem = facility_keys
    with pytest.raises(ClaimError, match="signature"):
        verify_envelope(envelope, cert_pem)


def test_a_signature_outside_chukydonvi_does_not_verify(signed, facility_keys):
    _, cert_pem = facility_keys
    root = etree.fromstring(signed)
    root.append(root.find("CHUKYDONVI")[0])  # moved to the end of the envelope
    with pytest.raises(ClaimError, match="signature"):
        verify_envelope(etree.tostring(root), cert_pem)


def test_a_signed_envelope_is_not_signed_again(signed, facility_keys):
    with pytest.raises(ClaimError, match="no empty CHUKYDONVI"):
        sign_envelope(signed, *facility_keys)


def test_the_check_in_file_is_signed_the_same_way(facility_keys):
    key_pem, cert_pem = facility_keys
    check_in = build_check_in(outpatient_check_in())
    signed = sign_envelope(check_in, key_pem, cert_pem)
    validate_table("XML0", signed)
    assert verify_envelope(signed, cert_pem) == check_in


def test_the_test_certificate_names_the_facility(facility_keys):
    key_pem, cert_pem = facility_keys
    certificate = x509.load_pem_x509_certificate(cert_pem)
    subject = certificate.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "Bệnh viện Đa khoa Hà Nội"
    )
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "01001"
    assert subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "01001"
    assert certificate.issuer == subject
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert dt.timedelta(days=5 * 365) <= lifetime <= dt.timedelta(days=5 * 366)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
