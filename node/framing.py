"""Length-prefixed frames on a byte stream (pure; no I/O).

Wire format: each frame is a 4-byte big-endian unsigned length followed by
that many bytes. A zero length is a heartbeat (:data:`HEARTBEAT`): it carries
no frame and the decoder skips it. A length above the reader's
``max_frame_size`` is malformed: the stream cannot be resynchronised, so the
decoder records a :class:`FrameError` and the caller closes the stream.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

LENGTH_PREFIX_SIZE = 4
MAX_FRAME_SIZE_LIMIT = 4 * 1024 * 1024
_LENGTH = struct.Struct(">I")
HEARTBEAT = b"\x00\x00\x00\x00"


class FrameError(ValueError):
    """A frame is empty (when encoding) or larger than the allowed size."""


def check_max_frame_size(max_frame_size: int) -> None:
    """Raise :class:`ValueError` unless ``1 <= max_frame_size <= MAX_FRAME_SIZE_LIMIT``."""
    if not 1 <= max_frame_size <= MAX_FRAME_SIZE_LIMIT:
        raise ValueError(
            f"max_frame_size must be in [1, {MAX_FRAME_SIZE_LIMIT}], got {max_frame_size}"
        )


def compute_framed_size(frame: bytes) -> int:
    """Return the number of bytes ``frame`` occupies on the wire."""
    return LENGTH_PREFIX_SIZE + len(frame)


def encode_frame(frame: bytes, max_frame_size: int = MAX_FRAME_SIZE_LIMIT) -> bytes:
    """Return ``frame`` with its length prefix; raises FrameError if empty or too large."""
    return encode_frames((frame,), max_frame_size)


def encode_frames(frames: Iterable[bytes], max_frame_size: int = MAX_FRAME_SIZE_LIMIT) -> bytes:
    """Return the concatenation of every frame with its length prefix, in order.

    Raises :class:`FrameError` if any frame is empty or longer than ``max_frame_size``.
    """
    check_max_frame_size(max_frame_size)
    parts: list[bytes] = []
    for frame in frames:
        size = len(frame)
        if size == 0 or size > max_frame_size:
            raise FrameError(f"frame of {size} bytes is outside [1, {max_frame_size}]")
        parts.append(_LENGTH.pack(size))
        parts.append(frame)
    return b"".join(parts)


class FrameDecoder:
    """Incremental decoder: feed it stream chunks, get back complete frames.

    Guarantees: frames come out in stream order, each exactly as encoded; the
    internal buffer never holds more than one partial frame, so it is bounded
    by ``max_frame_size + LENGTH_PREFIX_SIZE`` plus one fed chunk.

    On a malformed length, ``feed`` still returns the frames that precede it
    in the chunk and records the problem in :attr:`error`; the stream cannot
    be resynchronised, so the caller must check :attr:`error` after each feed
    and close the stream. Any later ``feed`` raises that :class:`FrameError`.
    """

    def __init__(self, max_frame_size: int) -> None:
        check_max_frame_size(max_frame_size)
        self.max_frame_size = max_frame_size
        self.error: FrameError | None = None
        self.heartbeats = 0
        self._buffer = bytearray()

    def get_buffered_size(self) -> int:
        """Return the number of bytes held for a partial frame."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[bytes]:
        """Append ``chunk`` and return every frame it completes (possibly none)."""
        if self.error is not None:
            raise self.error
        buffer = self._buffer
        buffer += chunk
        frames: list[bytes] = []
        offset = 0
        end = len(buffer)
        while end - offset >= LENGTH_PREFIX_SIZE:
            (size,) = _LENGTH.unpack_from(buffer, offset)
            if size > self.max_frame_size:
                self.error = FrameError(
                    f"frame length {size} is above the limit {self.max_frame_size}"
                )
                buffer.clear()
                return frames
            start = offset + LENGTH_PREFIX_SIZE
            if size == 0:  # heartbeat
                self.heartbeats += 1
                offset = start
                continue
            if end - start < size:
                break
            frames.append(bytes(buffer[start : start + size]))
            offset = start + size
        if offset:
            del buffer[:offset]
        return frames
