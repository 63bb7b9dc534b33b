"""Properties of the HL7 v2 reader, writer and ACK builder over generated and mutated messages.

Generated: ADT^A04 messages written by our builder with random delimiters (any legal MSH-2),
Vietnamese names holding delimiters and escape characters, random control ids; the reader must
give back every value. Mutated: the bytes of such messages flipped, cut, doubled and spliced;
the reader must either read them or raise its own DecodeError, and an ACK (AR) can always be
built from what is left, and read back by our own ACK reader.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from his.hl7v2 import batch
from his.hl7v2.ack import ErrorDetail, build_ack, encode_ack, parse_ack
from his.hl7v2.builder import MessageBuilder, Repeat
from his.hl7v2.codec import DecodeError, Delimiters, Hl7Error, parse
from tests.properties import BOUNDED, scaled

pytestmark = pytest.mark.usefixtures("babel_context")

NOW = dt.datetime(2026, 3, 1, 1, 30, tzinfo=dt.UTC)
PUNCTUATION = [c for c in string.punctuation]

# Letters of Vietnamese names, and the characters that must be escaped inside a value.
LETTERS = "aăâbcdđeêghiklmnoôơpqrstuưvxyÀÁẢÃẠĂẮẰẲẴẶÂẤẦẨẪẬĐÊẾỀỂỄỆỨỪỬỮỰỳýỷỹỵ"
values = st.text(st.sampled_from([*LETTERS, " ", *"|^~\\&#$%!*-'"]), min_size=1, max_size=20)
control_ids = st.text(
    st.sampled_from([*string.ascii_letters, *string.digits, *"-_.|^~\\&"]), min_size=1, max_size=20
)


@st.composite
def delimiters(draw) -> Delimiters:
    """Any legal MSH-1/MSH-2: distinct printable punctuation, 2 to 5 encoding characters."""
    chars = draw(st.lists(st.sampled_from(PUNCTUATION), min_size=5, max_size=6, unique=True))
    count = draw(st.integers(3, 5))  # with an escape character: the values can be escaped
    chars = chars[: 1 + count] + [""] * (5 - count)
    return Delimiters(*chars[:6])


@st.composite
def adt_messages(draw):
    """(bytes, what the reader must find) for an ADT^A04 written by our builder."""
    d = draw(delimiters())
    family, given_name, middle = draw(values), draw(values), draw(values)
    control = draw(control_ids)
    builder = MessageBuilder(
        "2.5",
        sending_app="LIS",
        sending_facility="BV",
        receiving_app="HIS",
        receiving_facility="HIS",
    )
    builder.delimiters = d
    builder.msh("ADT^A04^ADT_A01", control, NOW)
    builder.segment("EVN", {1: "A04"})
    builder.segment(
        "PID",
        {
            1: "1",
            3: Repeat([("LIS-77", "", "", "LISBV", "PI"), ("001219012345", "", "", "BCA")]),
            5: (family, given_name, middle),
            7: "20190207",
            8: "M",
        },
    )
    expected = {"control": control, "name": (family, given_name, middle)}
    return builder.to_bytes(), expected


@st.composite
def mutated(draw):
    """A generated message with a few byte-level faults applied."""
    raw, _ = draw(adt_messages())
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete", "double", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "double":
            data[at:at] = data[at : at + draw(st.integers(1, 30))]
        elif kind == "truncate":
            del data[at:]
        elif kind == "cut":
            data[at:at] = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b"\xef\xbb\xbf"]))
    return bytes(data)


@BOUNDED
@given(adt_messages())
def test_every_generated_message_reads_back_its_values(case):
    raw, expected = case
    msg = parse(raw)
    assert msg.control_id == expected["control"].strip()
    assert (msg.message_code, msg.trigger, msg.structure) == ("ADT", "A04", "ADT_A01")
    assert msg.version == "2.5" and msg.charset == "UNICODE UTF-8"
    pid = msg.segment("PID")
    assert tuple(pid.get(5, n) for n in (1, 2, 3)) == expected["name"]
    assert pid.get(3, 1, repetition=2) == "001219012345" and pid.get(7) == "20190207"
    # Written again from what was read, the message is the same text.
    assert "\r".join(s.to_er7() for s in msg.segments) + "\r" == raw.decode()


@BOUNDED
# The reader trims spaces that end a segment (senders pad lines): texts here do not end in one.
@given(adt_messages(), st.sampled_from(["AA", "AE", "AR"]), values.map(str.strip).filter(bool))
def test_the_ack_of_a_generated_message_acknowledges_its_control_id(case, code, text):
    raw, _expected = case
    msg = parse(raw)
    errors = [ErrorDetail(207, "PID^1^5", text)] if code != "AA" else []
    ack = parse_ack(encode_ack(build_ack(msg, code, control_id="ACK1", now=NOW, errors=errors)))
    assert (ack.code, ack.control_id_acked) == (code, msg.control_id)
    assert ack.message.delimiters == msg.delimiters
    if errors:
        assert [(e.code, e.location, e.text) for e in ack.errors] == [(207, "PID^1^5", text)]


@settings(BOUNDED, max_examples=scaled(300))
@given(mutated())
# Found by this test: a line of two characters ("!M") made the reader index past its end.
@example(b"MSH|^~\\&|A|B|C|D|20260301||ADT^A04|1|P|2.5\rPID|1\r|M\r")
# Found by this test: a garbled MSH-18 was copied into the ACK, which our reader refused.
@example(b"MSH|^~\\&|A|B|C|D|20260301||ADT^A04|1|P|2.5|||||VNM|UNICODE UTF\r")
def test_mutated_bytes_are_read_or_refused_with_a_decode_error(data):
    try:
        msg = parse(data)
    except DecodeError as error:
        assert error.code in (100, 101, 102, 103) and str(error)
        msg = None
    if msg is not None:
        # What was read can be walked without surprises.
        for segment in msg.segments:
            for n in range(1, len(segment) + 1):
                segment.get(n)
                segment.components(n)
    # Whatever came in, the listener can answer it: an AR built from the raw bytes.
    detail = ErrorDetail(100, "MSH^1", "refused")
    ack_bytes = encode_ack(
        build_ack(msg, "AR", control_id="ACK1", now=NOW, errors=[detail], raw=data)
    )
    ack = parse_ack(ack_bytes)
    assert ack.code == "AR"


@BOUNDED
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_the_decode_error(data):
    for candidate in (data, b"MSH|^~\\&|" + data, b"MSH" + data):
        with contextlib.suppress(DecodeError):
            parse(candidate)
        ack = parse_ack(encode_ack(build_ack(None, "AR", control_id="X", now=NOW, raw=candidate)))
        assert ack.code == "AR"


@BOUNDED
@given(st.lists(adt_messages(), min_size=1, max_size=3), st.integers(0, 400), st.binary(max_size=3))
def test_batches_split_into_their_messages_or_raise_an_hl7_error(cases, at, noise):
    messages = [raw for raw, _ in cases]
    header = b"BHS|^~\\&|LIS|BV|HIS|HIS|20260301||||B1\r"
    trailer = b"BTS|%d\r" % len(messages)
    whole = header + b"".join(messages) + trailer
    try:
        read = batch.split(whole)
    except Hl7Error:
        # Only a message whose own delimiters differ from the batch's may be refused.
        assert any(parse(m).delimiters != Delimiters.DEFAULT for m in messages)
    else:
        assert len(read.messages) == len(messages)
    broken = whole[:at] + noise + whole[at:]
    try:
        batch.split(broken)
    except Hl7Error as error:
        assert str(error)
