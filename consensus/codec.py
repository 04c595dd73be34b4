"""Canonical binary encoding.

One value has exactly one encoding, so hashes and signatures over encoded
values are well defined. Supported values: ``None``, ``bool``, ``int``
(arbitrary sign, at most 256 bits), ``bytes``, ``str``, ``list``/``tuple``
(decoded as ``list``) and ``dict`` with ``str`` keys (encoded in sorted key
order). Floats are refused: nothing that is hashed or signed may hold one.

Decoding is bounded: total size, nesting depth and item counts are checked,
and any malformed input raises :class:`CodecError` (never another exception).
"""

from __future__ import annotations

from typing import Any

MAX_ENCODED_SIZE = 4 * 1024 * 1024
MAX_DEPTH = 32
MAX_INT_BITS = 256

_NONE = 0x00
_FALSE = 0x01
_TRUE = 0x02
_INT = 0x03
_BYTES = 0x04
_STR = 0x05
_LIST = 0x06
_DICT = 0x07


class CodecError(ValueError):
    """Raised for values that cannot be encoded and bytes that do not decode."""


class Encoded(bytes):
    """The canonical encoding of one value, embedded as is where it appears in a
    value being encoded: a part encoded once (a quorum certificate written to
    the store, a frame and a record) is not encoded again. Made only by
    :func:`encode_once`, so it always holds exactly one canonical value."""


# An encoded part nests at most this deep and embeds at most MAX_DEPTH minus
# this deep, so that whatever holds it still decodes within MAX_DEPTH.
ENCODED_PART_MAX_DEPTH = 8


def encode_once(value: Any) -> Encoded:
    """Return the canonical encoding of ``value`` as an :class:`Encoded` part.

    ``encode([x, encode_once(y)]) == encode([x, y])`` whenever both succeed.
    Raises CodecError if ``value`` nests deeper than ``ENCODED_PART_MAX_DEPTH``;
    embedding the part deeper than ``MAX_DEPTH - ENCODED_PART_MAX_DEPTH``
    raises CodecError too.
    """
    out = bytearray()
    _encode(out, value, MAX_DEPTH - ENCODED_PART_MAX_DEPTH)
    return Encoded(_check_size(out))


def _check_size(out: bytearray) -> bytes:
    if len(out) > MAX_ENCODED_SIZE:
        raise CodecError(f"encoded value is {len(out)} bytes, limit {MAX_ENCODED_SIZE}")
    return bytes(out)


def _put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _encode(out: bytearray, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    kind = type(value)
    if kind is bytes:  # the common cases first: bytes, small ints, lists
        out.append(_BYTES)
        size = len(value)
        if size < 0x80:
            out.append(size)
        else:
            _put_varint(out, size)
        out += value
    elif kind is int:
        if value.bit_length() > MAX_INT_BITS:
            raise CodecError("integer too large")
        out.append(_INT)
        z = (value << 1) if value >= 0 else ((-value << 1) - 1)
        if z < 0x80:
            out.append(z)
        else:
            _put_varint(out, z)
    elif kind is list or kind is tuple:
        out.append(_LIST)
        _put_varint(out, len(value))
        for item in value:
            _encode(out, item, depth + 1)
    elif kind is str:
        raw = value.encode("utf-8")
        out.append(_STR)
        _put_varint(out, len(raw))
        out += raw
    elif kind is Encoded:
        if depth > MAX_DEPTH - ENCODED_PART_MAX_DEPTH:
            raise CodecError("value nested too deeply")
        out += value
    elif value is None:
        out.append(_NONE)
    elif value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif isinstance(value, int):
        _encode(out, int(value), depth)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _encode(out, bytes(value), depth)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(_STR)
        _put_varint(out, len(raw))
        out += raw
    elif isinstance(value, (list, tuple)):
        _encode(out, list(value), depth)
    elif isinstance(value, dict):
        keys = list(value.keys())
        if not all(isinstance(k, str) for k in keys):
            raise CodecError("dict keys must be str")
        out.append(_DICT)
        _put_varint(out, len(keys))
        for key in sorted(keys):
            raw = key.encode("utf-8")
            _put_varint(out, len(raw))
            out += raw
            _encode(out, value[key], depth + 1)
    else:
        raise CodecError(f"cannot encode value of type {type(value).__name__}")


def encode(value: Any) -> bytes:
    """Return the canonical encoding of ``value``; raises CodecError if unsupported."""
    out = bytearray()
    _encode(out, value, 0)
    return _check_size(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Return (value, position after it) of the unsigned LEB128 varint at ``pos``."""
    if pos >= len(data):
        raise CodecError("truncated input")
    b = data[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= len(data):
            raise CodecError("truncated input")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if b == 0:
                raise CodecError("non-canonical varint")
            return result, pos
        shift += 7
        if shift > MAX_INT_BITS + 8:
            raise CodecError("varint too long")


def _take(data: bytes, pos: int) -> tuple[bytes, int]:
    """Return (bytes, position after them) of the length-prefixed bytes at ``pos``."""
    size, pos = _read_varint(data, pos)
    end = pos + size
    if end > len(data):
        raise CodecError("truncated input")
    return data[pos:end], end


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """Return (value, position after it) of the encoded value at ``pos``."""
    if depth > MAX_DEPTH:
        raise CodecError("input nested too deeply")
    if pos >= len(data):
        raise CodecError("truncated input")
    tag = data[pos]
    pos += 1
    if tag == _BYTES:
        return _take(data, pos)
    if tag == _INT:
        z, pos = _read_varint(data, pos)
        value = (z >> 1) if not z & 1 else -((z + 1) >> 1)
        if value.bit_length() > MAX_INT_BITS:
            raise CodecError("integer too large")  # as encode refuses it: -(2**256)
        return value, pos
    if tag == _LIST:
        count, pos = _read_varint(data, pos)
        if count > len(data) - pos:
            raise CodecError("list count exceeds input")
        items = []
        for _ in range(count):
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if tag == _NONE:
        return None, pos
    if tag == _TRUE:
        return True, pos
    if tag == _FALSE:
        return False, pos
    if tag == _STR:
        raw, pos = _take(data, pos)
        try:
            return raw.decode("utf-8"), pos
        except UnicodeDecodeError as exc:
            raise CodecError("invalid utf-8 in string") from exc
    if tag == _DICT:
        count, pos = _read_varint(data, pos)
        if count > len(data) - pos:
            raise CodecError("dict count exceeds input")
        result: dict[str, Any] = {}
        previous: str | None = None
        for _ in range(count):
            raw, pos = _take(data, pos)
            try:
                key = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise CodecError("invalid utf-8 in key") from exc
            if previous is not None and key <= previous:
                raise CodecError("dict keys not in canonical order")
            previous = key
            result[key], pos = _decode(data, pos, depth + 1)
        return result, pos
    raise CodecError(f"unknown tag 0x{tag:02x}")


def decode(data: bytes, max_size: int = MAX_ENCODED_SIZE) -> Any:
    """Decode one canonical value that spans all of ``data``.

    Raises CodecError on malformed, non-canonical, oversized or trailing input.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("input must be bytes")
    if len(data) > max_size:
        raise CodecError(f"input is {len(data)} bytes, limit {max_size}")
    raw = bytes(data)
    value, end = _decode(raw, 0, 0)
    if end != len(raw):
        raise CodecError("trailing bytes after value")
    return value


def decode_first(data: bytes) -> Any:
    """Return the first item of the encoded list ``data``, leaving the rest undecoded.

    For cheap checks before a full :func:`decode` (a block frame's height).
    Raises CodecError unless ``data`` starts with a non-empty list whose first
    item decodes; says nothing about the validity of the items after it.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError("input must be bytes")
    raw = data if isinstance(data, bytes) else bytes(data)
    if not raw or raw[0] != _LIST:
        raise CodecError("input is not a list")
    count, pos = _read_varint(raw, 1)
    if count == 0:
        raise CodecError("empty list")
    item, _ = _decode(raw, pos, 1)
    return item
