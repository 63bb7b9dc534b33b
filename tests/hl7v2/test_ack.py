"""ACK building (original and enhanced mode, ERR for 2.3 and 2.5), parse_ack, batch ACKs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from his.hl7v2.ack import (
    ErrorDetail,
    build_ack,
    build_batch_ack,
    encode_ack,
    format_ts,
    parse_ack,
)
from his.hl7v2.batch import split
from his.hl7v2.codec import DecodeError, parse
from tests.hl7v2.samples import read

NOW = datetime(2025, 3, 1, 1, 30, 15, tzinfo=UTC)  # 08:30:15 in Viet Nam
VN_TEXT = "Thiếu PID-3 loại HC (mã thẻ BHYT) | ^ & ~ \\"


def _hl7apy_valid(text: str) -> None:
    msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT)
    assert msg.name == "ACK"
    msg.validate()


def test_aa_original_mode_swaps_sender_and_receiver():
    received = parse(read("synthetic-vn/vn_adt_a01_utf8_cr.hl7"))
    ack = build_ack(received, "AA", control_id="ACK-1", now=NOW)
    assert ack.endswith("\r") and "\n" not in ack
    msg = parse(ack)
    assert msg.msh.field(3) == received.msh.field(5) and msg.msh.field(4) == received.msh.field(6)
    assert msg.msh.field(5) == received.msh.field(3) and msg.msh.field(6) == received.msh.field(4)
    assert msg.msh.field(9) == "ACK^A01^ACK" and msg.control_id == "ACK-1"
    assert msg.timestamp == "20250301083015+0700"
    assert msg.processing_id == "P" and msg.version == "2.5" and msg.charset == "UNICODE UTF-8"
    assert msg.get("MSA-1") == "AA" and msg.get("MSA-2") == received.control_id
    assert msg.all("ERR") == []
    _hl7apy_valid(ack)
    info = parse_ack(ack)
    assert info.accepted and info.control_id_acked == "BVQ1-20250301-0001"


def test_ae_v25_err_fields_and_vietnamese_text():
    received = parse(read("synthetic-vn/vn_adt_a08_update_crlf.hl7"))
    err = ErrorDetail(code=101, location="PID^1^3^3", text=VN_TEXT)
    ack = build_ack(received, "AE", control_id="ACK-2", now=NOW, errors=[err])
    msg = parse(ack)
    e = msg.segment("ERR")
    assert e.field(2) == "PID^1^3^3"
    assert e.components(3) == ["101", "Required field missing", "HL70357"]
    assert e.get(4) == "E"
    assert e.get(8) == VN_TEXT  # escaped on the wire, intact when read back
    assert "\\F\\" in e.field(8) and "\\S\\" in e.field(8) and "\\E\\" in e.field(8)
    _hl7apy_valid(ack)
    info = parse_ack(ack.encode())
    assert info.code == "AE" and info.errors == [err]


def test_ar_v23_uses_err1_eld_and_msa3():
    received = parse(read("mirth-connect/nonbatch04_ADT_A01.hl7"))
    assert received.version == "2.3"
    errors = [ErrorDetail(code=200, location="MSH^1^9", text="Loại tin nhắn không hỗ trợ")]
    ack = build_ack(received, "AR", control_id="ACK-3", now=NOW, errors=errors)
    msg = parse(ack)
    assert msg.msh.field(9) == "ACK^A01"  # no MSH-9.3 before 2.3.1
    assert msg.version_raw == "2.3"
    err = msg.segment("ERR")
    assert err.field(1) == "MSH^1^9^200&Unsupported message type&HL70357"
    assert msg.get("MSA-3") == "Loại tin nhắn không hỗ trợ"
    info = parse_ack(ack)
    assert info.code == "AR" and info.errors[0].code == 200
    assert info.errors[0].location == "MSH^1^9"


def test_enhanced_mode_commit_accept():
    received = parse(read("hapi-hl7v2/omd_o03.txt"))
    assert received.is_enhanced_mode
    ack = build_ack(received, "CA", control_id="C-1", now=NOW)
    msg = parse(ack)
    assert msg.get("MSA-1") == "CA" and msg.get("MSA-2") == received.control_id
    assert msg.msh.field(15) == "" and msg.msh.field(16) == ""  # an ACK is never acknowledged
    _hl7apy_valid(ack)
    assert parse_ack(ack).accepted


def test_ack_keeps_custom_delimiters_and_version():
    received = parse(read("synthetic-vn/edge_custom_encoding_chars.hl7"))
    ack = build_ack(
        received,
        "AE",
        control_id="X#1",
        now=NOW,
        errors=[ErrorDetail(101, "PID^1^3", "Thiếu#$")],
    )
    assert ack.startswith("MSH#$~\\&#")
    msg = parse(ack)
    assert msg.control_id == "X#1" and msg.msh.field(9) == "ACK$A08$ACK"
    assert msg.segment("ERR").field(2) == "PID$1$3"
    assert parse_ack(ack).errors[0].text == "Thiếu#$"


def test_ascii_peer_gets_ascii_ack():
    received = parse(split(read("python-hl7/sample_batch.hl7")).messages[0])
    assert received.charset == "ASCII"
    ack = build_ack(
        received, "AE", control_id="A", now=NOW, errors=[ErrorDetail(207, "", "Lỗi hệ thống đ")]
    )
    assert ack.isascii() and "Loi he thong d" in ack
    assert encode_ack(ack) == ack.encode("ascii")


def test_utf8_ack_encoding():
    ack = build_ack(
        parse(read("synthetic-vn/vn_adt_a01_utf8_cr.hl7")),
        "AE",
        control_id="A",
        now=NOW,
        errors=[ErrorDetail(207, "", "Lỗi")],
    )
    assert encode_ack(ack) == ack.encode("utf-8")


@pytest.mark.parametrize(
    ("sample", "acked", "charset"),
    [
        ("synthetic-vn/edge_cp1258_no_msh18.hl7", "BVQ1-EDGE-0010", ""),
        ("synthetic-vn/edge_declared_8859_1_but_utf8.hl7", "BVQ1-EDGE-0011", "8859/1"),
        ("synthetic-vn/edge_msh_only_truncated.hl7", "", ""),
        ("synthetic-vn/edge_not_hl7.hl7", "", ""),
    ],
)
def test_best_effort_ack_for_unreadable_messages(sample, acked, charset):
    raw = read(sample)
    with pytest.raises(DecodeError) as exc:
        parse(raw)
    ack = build_ack(
        None,
        "AR",
        control_id="R-1",
        now=NOW,
        raw=raw,
        errors=[ErrorDetail.from_error(exc.value)],
    )
    msg = parse(encode_ack(ack))
    assert msg.get("MSA-1") == "AR" and msg.get("MSA-2") == acked
    assert msg.charset == charset
    assert msg.segment("ERR").field(2) == exc.value.location
    assert msg.segment("ERR").get(3) == str(exc.value.code)
    if sample.endswith("not_hl7.hl7"):
        assert msg.msh.field(9) == "ACK" and msg.version == "2.5"
    else:
        assert msg.msh.field(3) == "CSDL_YTE"


def test_missing_msh10_ack_from_partial_message():
    with pytest.raises(DecodeError) as exc:
        parse(read("synthetic-vn/edge_missing_msh10.hl7"))
    ack = build_ack(
        exc.value.partial,
        "AR",
        control_id="R-2",
        now=NOW,
        errors=[ErrorDetail.from_error(exc.value)],
    )
    msg = parse(ack)
    assert msg.get("MSA-2") == "" and msg.segment("ERR").field(2) == "MSH^1^10"
    assert msg.segment("ERR").get(3) == "101"


def test_parse_sample_acks():
    info = parse_ack(read("synthetic-vn/ack_ae_err_v25.hl7"))
    assert info.code == "AE" and info.control_id_acked == "BVQ1-20250301-0001"
    assert info.errors[0].code == 101 and info.errors[0].location == "PID^1^3^3"
    assert info.errors[0].text.startswith("Thiếu PID-3")
    assert parse_ack(read("synthetic-vn/ack_ca_commit_enhanced.hl7")).code == "CA"
    assert parse_ack(read("synthetic-vn/ack_ar_unsupported_type.hl7")).errors[0].code == 200
    with pytest.raises(DecodeError):
        parse_ack(read("synthetic-vn/vn_adt_a01_utf8_cr.hl7"))


def test_bad_code_and_naive_time_refused():
    received = parse(read("synthetic-vn/vn_adt_a01_utf8_cr.hl7"))
    with pytest.raises(ValueError):
        build_ack(received, "OK", control_id="A", now=NOW)
    with pytest.raises(ValueError):
        format_ts(datetime(2025, 1, 1))  # noqa: DTZ001 - the point of the test


def test_batch_ack():
    batch = split(read("synthetic-vn/batch_fhs_bhs_two_adt.hl7"))
    acks = [
        build_ack(parse(m), "AA", control_id=f"A{i}", now=NOW) for i, m in enumerate(batch.messages)
    ]
    out = build_batch_ack(batch, acks, control_id="RESP-1", now=NOW)
    back = split(out.encode())
    assert back.declared_count == 2 and back.declared_batch_count == 1 and back.complete
    assert back.batch_control_id == "RESP-1"
    assert back.header.get(12) == "BATCH-20250301-1"
    assert back.file_header.get(12) == "FILE-20250301"
    assert back.sending_application == "CSDL_YTE"
    assert [parse_ack(m).control_id_acked for m in back.messages] == [
        "BVQ1-B-0001",
        "BVQ1-B-0002",
    ]
