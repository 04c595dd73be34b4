"""Length-prefixed framing: round trips over any chunking, and malformed input."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.framing import (
    HEARTBEAT,
    LENGTH_PREFIX_SIZE,
    MAX_FRAME_SIZE_LIMIT,
    FrameDecoder,
    FrameError,
    compute_framed_size,
    encode_frame,
    encode_frames,
)

frames_st = st.lists(st.binary(min_size=1, max_size=300), max_size=40)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(frames_st, st.lists(st.integers(min_value=0, max_value=20_000), max_size=30))
def test_round_trip_over_any_chunking(frames: list[bytes], cuts: list[int]) -> None:
    data = encode_frames(frames, 300)
    assert len(data) == sum(compute_framed_size(f) for f in frames)
    decoder = FrameDecoder(300)
    out: list[bytes] = []
    for chunk in _chunks(data, cuts):
        out.extend(decoder.feed(chunk))
    assert out == frames
    assert decoder.error is None
    assert decoder.get_buffered_size() == 0


def test_wire_format_is_big_endian_length_then_bytes() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frames([b"a", b"bc"]) == b"\x00\x00\x00\x01a\x00\x00\x00\x02bc"
    assert LENGTH_PREFIX_SIZE == 4


def test_partial_frame_is_held_until_complete() -> None:
    decoder = FrameDecoder(100)
    data = encode_frame(b"hello")
    assert decoder.feed(data[:2]) == []
    assert decoder.feed(data[2:6]) == []
    assert decoder.get_buffered_size() == 6
    assert decoder.feed(data[6:]) == [b"hello"]
    assert decoder.get_buffered_size() == 0


def test_oversized_length_is_an_error_after_earlier_frames() -> None:
    decoder = FrameDecoder(10)
    data = encode_frame(b"ok") + (11).to_bytes(4, "big") + b"x" * 11
    assert decoder.feed(data) == [b"ok"]
    assert isinstance(decoder.error, FrameError)
    assert "11" in str(decoder.error)
    assert decoder.get_buffered_size() == 0
    with pytest.raises(FrameError):
        decoder.feed(encode_frame(b"later"))


def test_heartbeats_are_skipped_and_counted() -> None:
    decoder = FrameDecoder(1024)
    data = HEARTBEAT + encode_frame(b"a") + HEARTBEAT + HEARTBEAT + encode_frame(b"b")
    out: list[bytes] = []
    for i in range(len(data)):
        out.extend(decoder.feed(data[i : i + 1]))
    assert out == [b"a", b"b"]
    assert decoder.heartbeats == 3
    assert decoder.error is None
    assert (0).to_bytes(4, "big") == HEARTBEAT


def test_garbage_length_is_an_error() -> None:
    garbage = FrameDecoder(1024)
    assert garbage.feed(b"\xff\xfe\xfd\xfcjunk") == []
    assert garbage.error is not None


def test_exact_limit_is_accepted() -> None:
    decoder = FrameDecoder(8)
    assert decoder.feed(encode_frames([b"12345678"], 8)) == [b"12345678"]
    assert decoder.error is None


def test_encoder_rejects_bad_frames_and_limits() -> None:
    with pytest.raises(FrameError):
        encode_frames([b""])
    with pytest.raises(FrameError):
        encode_frames([b"123456789"], 8)
    with pytest.raises(ValueError):
        encode_frames([b"x"], MAX_FRAME_SIZE_LIMIT + 1)
    with pytest.raises(ValueError):
        FrameDecoder(0)
