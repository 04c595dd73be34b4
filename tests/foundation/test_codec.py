"""Canonical codec: round trips, uniqueness of encodings, and bounded decoding."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus import codec

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**255), max_value=2**255)
    | st.binary(max_size=64)
    | st.text(max_size=32),
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=40,
)


@given(values)
def test_round_trip(value: object) -> None:
    assert codec.decode(codec.encode(value)) == value


@given(values)
def test_encoding_is_canonical(value: object) -> None:
    encoded = codec.encode(value)
    assert codec.encode(codec.decode(encoded)) == encoded


@given(st.binary(max_size=256))
def test_garbage_never_raises_other_errors(data: bytes) -> None:
    with contextlib.suppress(codec.CodecError):
        codec.decode(data)


def test_dict_order_does_not_change_encoding() -> None:
    assert codec.encode({"b": 1, "a": 2}) == codec.encode({"a": 2, "b": 1})


def test_tuple_encodes_as_list() -> None:
    assert codec.decode(codec.encode((1, b"x"))) == [1, b"x"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x04\x05ab", "truncated"),
        (b"\x00\x00", "trailing"),
        (b"\x09", "unknown tag"),
        (b"\x03\x80\x00", "non-canonical"),
        (b"\x07\x02\x01b\x00\x01a\x00", "canonical order"),
        (b"\x06\xff\xff\xff\x0f", "exceeds"),
    ],
)
def test_malformed_inputs_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(codec.CodecError, match=reason):
        codec.decode(data)


def test_floats_are_refused() -> None:
    with pytest.raises(codec.CodecError, match="float"):
        codec.encode([1.5])


def test_size_and_depth_limits() -> None:
    with pytest.raises(codec.CodecError, match="limit"):
        codec.decode(b"\x00" * 10, max_size=5)
    deep: list[object] = []
    for _ in range(codec.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(codec.CodecError, match="deep"):
        codec.encode(deep)
    nested = b"\x06\x01" * (codec.MAX_DEPTH + 2) + b"\x00"
    with pytest.raises(codec.CodecError, match="deep"):
        codec.decode(nested)


def test_integer_bound() -> None:
    with pytest.raises(codec.CodecError, match="too large"):
        codec.encode(2**300)
    # The one integer whose zigzag form fits the varint bound but not encode's.
    z = 2**257 - 1
    edge = bytes([0x03] + [(z >> (7 * i) & 0x7F) | 0x80 for i in range(36)] + [z >> 252])
    with pytest.raises(codec.CodecError, match="too large"):
        codec.encode(-(2**256))
    with pytest.raises(codec.CodecError, match="too large"):
        codec.decode(edge)


@given(values, st.integers(min_value=0, max_value=10_000), st.integers(0, 255))
def test_whatever_decodes_is_the_canonical_encoding_of_its_value(
    value: object, where: int, byte: int
) -> None:
    """Bytes that decode are exactly the encoding of what they decode to
    (payloads rely on it to be rebuilt from their parts)."""
    encoded = bytearray(codec.encode(value))
    encoded[where % len(encoded)] = byte
    try:
        decoded = codec.decode(bytes(encoded))
    except codec.CodecError:
        return
    assert codec.encode(decoded) == bytes(encoded)


@given(values, values)
def test_a_part_encoded_once_embeds_as_its_value_would(first: object, second: object) -> None:
    try:
        part = codec.encode_once(second)
    except codec.CodecError:
        with pytest.raises(codec.CodecError, match="deep"):
            codec.encode_once(second)
        return
    assert part == codec.encode(second)
    assert codec.encode([first, part]) == codec.encode([first, second])
    assert codec.encode({"a": part, "b": [part]}) == codec.encode({"a": second, "b": [second]})


def test_a_part_encoded_once_keeps_the_depth_limit() -> None:
    deep: object = 7
    for _ in range(codec.ENCODED_PART_MAX_DEPTH):
        deep = [deep]
    part = codec.encode_once(deep)
    with pytest.raises(codec.CodecError, match="deep"):
        codec.encode_once([deep])
    embedded: object = part
    for _ in range(codec.MAX_DEPTH - codec.ENCODED_PART_MAX_DEPTH):
        embedded = [embedded]
    assert codec.encode(embedded) == codec.encode(_unwrap(embedded))
    assert codec.decode(codec.encode(embedded)) == _unwrap(embedded)
    with pytest.raises(codec.CodecError, match="deep"):
        codec.encode([embedded])


def _unwrap(value: object) -> object:
    """``value`` with its encoded part decoded again."""
    if isinstance(value, codec.Encoded):
        return codec.decode(value)
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


def test_decode_first_reads_only_the_first_item_of_a_list() -> None:
    encoded = codec.encode([7, b"payload", [b"a", 1]])
    assert codec.decode_first(encoded) == 7
    assert codec.decode_first(codec.encode([[1, 2], "x"])) == [1, 2]
    # What follows the first item is not looked at (a full decode refuses it).
    cut = encoded[:-3]
    assert codec.decode_first(cut) == 7
    with pytest.raises(codec.CodecError):
        codec.decode(cut)


@pytest.mark.parametrize(
    "data",
    [b"", codec.encode(7), codec.encode([]), codec.encode([300])[:-1], b"\x06\x80"],
)
def test_decode_first_refuses_what_is_not_a_list_with_a_first_item(data: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode_first(data)
