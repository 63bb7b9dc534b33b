"""Every file of the shared HL7 v2 corpus goes through the codec (and batch splitter)."""

from __future__ import annotations

import pytest

from his.hl7v2.batch import is_batch, split, split_stream
from his.hl7v2.codec import DecodeError, Hl7Error, parse
from tests.hl7v2.samples import (
    MESSAGE_COUNTS,
    MESSAGE_FILES,
    MLLP_FILES,
    REFUSED,
    REFUSED_BATCHES,
    REFUSED_IN_STREAM,
    naive_msh,
    read,
    rel,
)


def test_corpus_is_there():
    assert len(MESSAGE_FILES) >= 120
    assert len(MLLP_FILES) == 4


@pytest.mark.parametrize("path", MESSAGE_FILES, ids=rel)
def test_sample_file(path):
    name = rel(path)
    data = path.read_bytes()

    if name in REFUSED_BATCHES:
        code, location = REFUSED_BATCHES[name]
        with pytest.raises(Hl7Error) as exc:
            split(data)
        assert (exc.value.code, exc.value.location) == (code, location)
        assert str(exc.value)
        return

    messages = split(data).messages if is_batch(data) else split_stream(data)
    assert len(messages) == MESSAGE_COUNTS.get(name, 1)

    if name in REFUSED:
        code, location = REFUSED[name]
        with pytest.raises(DecodeError) as exc:
            parse(data)
        assert (exc.value.code, exc.value.location) == (code, location)
        assert str(exc.value.message)
        return

    refused_here = REFUSED_IN_STREAM.get(name, {})
    for i, raw in enumerate(messages):
        if i in refused_here:
            with pytest.raises(DecodeError) as exc:
                parse(raw)
            assert (exc.value.code, exc.value.location) == refused_here[i]
            continue
        msg = parse(raw)
        msh9, msh10, msh12 = naive_msh(raw)
        d = msg.delimiters
        assert msg.msh.field(9) == msh9
        assert [msg.message_code, msg.trigger] == ([*msh9.split(d.component), ""])[:2]
        assert msg.control_id == msh10
        assert msg.version_raw == msh12
        assert msg.segments[0].name == "MSH"
        assert msg.raw == raw


def test_single_message_files_parse_whole():
    """A file holding one message parses as is (no splitting needed), BOM and LF included."""
    for path in MESSAGE_FILES:
        name = rel(path)
        data = path.read_bytes()
        if name in REFUSED or name in MESSAGE_COUNTS or name in REFUSED_BATCHES or is_batch(data):
            continue
        if data.lstrip(b"\xef\xbb\xbf")[:3] != b"MSH" or name == "python-hl7/sample_batch4.hl7":
            continue
        parse(data)


def test_headerless_batch_with_trailer():
    """python-hl7's sample_batch4 (MSH … BTS|1): not a message, but a valid batch."""
    data = read("python-hl7/sample_batch4.hl7")
    with pytest.raises(DecodeError) as exc:
        parse(data)
    assert (exc.value.code, exc.value.location) == (100, "BTS^1")
    batch = split(data)
    assert batch.declared_count == 1 and len(batch.messages) == 1


def test_two_messages_in_one_frame_are_refused():
    with pytest.raises(DecodeError) as exc:
        parse(read("synthetic-vn/edge_dup_control_id.hl7"))
    assert (exc.value.code, exc.value.location) == (100, "MSH^2")


def test_dup_control_id_file_gives_two_messages_with_the_same_msh10():
    a, b = (parse(m) for m in split_stream(read("synthetic-vn/edge_dup_control_id.hl7")))
    assert a.control_id == b.control_id == "BVQ1-DUP-0001"


def test_hapi_comment_lines_are_skipped():
    messages = [parse(m) for m in split_stream(read("hapi-hl7v2/messages.txt"))]
    assert all(not m.text.startswith(("/", "*")) for m in messages)
    assert [m.message_code for m in messages].count("BAR") == 11
    odd = [m for m in messages if m.delimiters.escape == "}"]
    assert odd  # MSH-2 "^~}": escape char '}' and no sub-component separator
    assert any(m.delimiters.subcomponent == "" for m in odd)


@pytest.mark.parametrize("path", MLLP_FILES, ids=rel)
def test_mllp_streams_hold_parsable_frames(path):
    """Framing itself is tested by the MLLP listener; here: each frame's payload parses."""
    data = path.read_bytes()
    payloads = []
    for chunk in data.split(b"\x0b")[1:] if b"\x0b" in data else [data]:
        payloads.append(chunk.split(b"\x1c")[0])
    assert payloads
    for payload in payloads:
        assert parse(payload).control_id
