"""MLLP framing on bytes: the Deframer against hand-made streams, the sample .bin files and
hypothesis-generated splits."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from his.hl7v2.mllp import END, START, Deframer, FrameTooLarge, frame

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "hl7" / "synthetic-vn"


def sample(name: str) -> bytes:
    return (SAMPLE_DIR / name).read_bytes()


def feed_all(deframer: Deframer, chunks: list[bytes]) -> list[bytes]:
    return [payload for chunk in chunks for payload in deframer.feed(chunk)]


def test_frame_wraps_payload():
    assert frame(b"MSH|x") == b"\x0bMSH|x\x1c\x0d"
    assert START == b"\x0b" and END == b"\x1c\x0d"


def test_frame_refuses_end_byte_in_payload():
    with pytest.raises(ValueError):
        frame(b"MSH|\x1cbroken")


def test_single_frame_and_counters():
    d = Deframer()
    assert d.feed(frame(b"ONE")) == [b"ONE"]
    assert d.frames == 1
    assert d.discarded_bytes == 0
    assert d.pending_bytes == 0
    assert not d.in_frame


def test_several_frames_in_one_read():
    d = Deframer()
    assert d.feed(frame(b"A") + frame(b"B") + frame(b"C")) == [b"A", b"B", b"C"]


def test_frame_split_at_every_offset():
    stream = frame(b"MSH|first") + frame(b"MSH|second")
    for cut in range(len(stream) + 1):
        d = Deframer()
        assert feed_all(d, [stream[:cut], stream[cut:]]) == [b"MSH|first", b"MSH|second"], cut
        assert d.discarded_bytes == 0


def test_byte_by_byte():
    stream = b"\x00\r\n" + frame(b"X" * 50) + b"\r\n" + frame(b"Y")
    d = Deframer()
    assert feed_all(d, [stream[i : i + 1] for i in range(len(stream))]) == [b"X" * 50, b"Y"]
    assert d.discarded_bytes == 5


def test_pending_bytes_while_mid_frame():
    d = Deframer()
    assert d.feed(b"\x0bMSH|abc") == []
    assert d.in_frame
    assert d.pending_bytes == 8
    assert d.feed(b"\x1c") == [b"MSH|abc"]
    assert d.pending_bytes == 0


def test_split_between_fs_and_cr_delivers_on_fs_and_cr_is_not_junk():
    d = Deframer()
    assert d.feed(b"\x0bABC\x1c") == [b"ABC"]
    assert d.feed(b"\x0d") == []
    assert d.discarded_bytes == 0


def test_junk_between_frames_counted():
    d = Deframer()
    assert d.feed(b"\x00\x00\x0d\x0a" + frame(b"A") + b"\x00\x00\x0d\x0a" + frame(b"B")) == [
        b"A",
        b"B",
    ]
    assert d.discarded_bytes == 8


def test_start_byte_inside_frame_is_payload():
    d = Deframer()
    assert d.feed(b"\x0bAB\x0bCD\x1c\x0d") == [b"AB\x0bCD"]


def test_fs_without_cr_ends_frame_and_next_frame_follows():
    d = Deframer()
    assert d.feed(b"\x0bA\x1c\x0bB\x1c\x0d") == [b"A", b"B"]
    assert d.discarded_bytes == 0


def test_empty_frame_is_delivered():
    assert Deframer().feed(b"\x0b\x1c\x0d") == [b""]


def test_too_large_raises_without_buffering_and_resynchronises():
    d = Deframer(max_frame=10)
    stream = frame(b"ok") + b"\x0b" + b"Z" * 1000 + b"\x1c\x0d" + frame(b"after")
    with pytest.raises(FrameTooLarge) as info:
        d.feed(stream)
    assert info.value.frames == [b"ok"]
    assert info.value.limit == 10
    assert len(d._buf) <= 10
    assert d.feed(b"") == [b"after"]
    assert d.oversized_frames == 1
    # The oversized frame, start and end bytes included, is all discarded; nothing else.
    assert d.discarded_bytes == 1 + 1000 + 2


def test_too_large_across_reads_never_holds_more_than_limit():
    d = Deframer(max_frame=100)
    d.feed(b"\x0b" + b"a" * 60)
    with pytest.raises(FrameTooLarge) as info:
        d.feed(b"a" * 60)
    assert info.value.frames == []
    assert d.pending_bytes < 100
    for _ in range(100):  # an endless oversized frame costs no memory
        assert d.feed(b"b" * 1000) == []
        assert d.pending_bytes == 0
    assert d.feed(b"\x1c\x0d\x0bnext\x1c\x0d") == [b"next"]


def test_frame_of_exactly_max_size_passes():
    d = Deframer(max_frame=5)
    assert d.feed(frame(b"12345")) == [b"12345"]


def test_close_drops_partial_frame_and_resets():
    d = Deframer()
    d.feed(b"\x0bpartial")
    assert d.close() == 8
    assert d.discarded_bytes == 8
    assert d.feed(frame(b"fresh")) == [b"fresh"]


# -- the sample streams --------------------------------------------------------------


def test_sample_three_messages():
    d = Deframer()
    frames = d.feed(sample("mllp_stream_three_messages.bin"))
    assert len(frames) == 3
    assert all(f.startswith(b"MSH|") for f in frames)
    assert d.discarded_bytes == 0


def test_sample_junk_between_frames():
    data = sample("mllp_stream_junk_between_frames.bin")
    d = Deframer()
    frames = d.feed(data)
    assert len(frames) == 2
    assert all(f.startswith(b"MSH|") for f in frames)
    # 00 00 0D 0A between the frames, and a trailing LF after the last 1C 0D.
    assert d.discarded_bytes == 5
    # Same frames in any reading of the file, e.g. 7-byte reads.
    d2 = Deframer()
    assert feed_all(d2, [data[i : i + 7] for i in range(0, len(data), 7)]) == frames


def test_sample_missing_end_cr_delivers_frame():
    data = sample("mllp_frame_missing_end_cr.bin")
    assert data.endswith(b"\x1c")
    d = Deframer()
    frames = d.feed(data)
    assert len(frames) == 1 and frames[0].startswith(b"MSH|")
    assert frames[0] == data[1:-1]
    assert d.close() == 0


def test_sample_no_start_block_yields_nothing_and_counts_all():
    data = sample("mllp_frame_no_start_block.bin")
    d = Deframer()
    assert d.feed(data) == []
    assert d.discarded_bytes == len(data)
    assert d.pending_bytes == 0


# -- property: any split of any stream of frames with junk between ---------------------

payloads = st.binary(max_size=60).map(lambda b: b.replace(b"\x1c", b""))
junk = st.binary(max_size=6).map(lambda b: b.replace(b"\x0b", b""))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(junk, payloads), max_size=8),
    junk,
    st.lists(st.integers(min_value=0, max_value=1000), max_size=12),
)
def test_any_split_yields_the_frames(pieces, trailing_junk, cuts):
    stream = b"".join(j + frame(p) for j, p in pieces) + trailing_junk
    bounds = sorted({c % (len(stream) + 1) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    d = Deframer()
    assert feed_all(d, chunks) == [p for _, p in pieces]
    # frame() always writes 1C 0D, so every junk byte is counted.
    expected_junk = sum(len(j) for j, _ in pieces) + len(trailing_junk)
    assert d.discarded_bytes == expected_junk
    assert d.pending_bytes == 0
