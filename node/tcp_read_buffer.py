"""Buffered reads on py-libp2p's TCP streams.

Every Noise message is read in two calls on the TCP stream, its 2-byte length
and then its body (``read_exactly`` in ``libp2p.io.msgio``). py-libp2p's
``TrioTCPStream.read`` turns each call into one ``receive_some``: a lock, a
checkpoint and a ``recv`` system call, two per message even when the kernel
already holds several messages.

:func:`install_buffered_tcp_reads` makes ``TrioTCPStream.read`` take up to
``READ_CHUNK`` bytes at once and serve later calls from what is left, so that
one system call serves the length and body of a message and of the messages
that arrived with it. Semantics are those of the original: at most ``n``
bytes per call, ``b""`` at end of stream or after a local close, and
``ConnectionClosedError`` when the peer reset the connection. The buffer of
one stream is at most ``READ_CHUNK`` bytes (or one read's ``n`` when larger).
"""

from __future__ import annotations

from typing import Any

import trio
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.io.trio import TrioTCPStream

READ_CHUNK = 64 * 1024
_INSTALLED_ATTR = "_dmchain_buffered_reads"


def compute_take(data: bytes, offset: int, n: int | None) -> tuple[bytes, int]:
    """Return ``(chunk, new_offset)``: at most ``n`` bytes of ``data`` from ``offset``
    (all that is left when ``n`` is None). Guarantees ``len(chunk) ==
    new_offset - offset``."""
    end = len(data) if n is None else min(len(data), offset + n)
    if offset == 0 and end == len(data):
        return data, end
    return data[offset:end], end


async def _buffered_read(self: Any, n: int | None = None) -> bytes:
    """Replacement for ``TrioTCPStream.read`` (see module doc)."""
    async with self.read_lock:
        if n is not None and n == 0:
            return b""
        data: bytes = getattr(self, "_dmchain_data", b"")
        offset: int = getattr(self, "_dmchain_offset", 0)
        if offset >= len(data):
            try:
                data = await self.stream.receive_some(max(n or 0, READ_CHUNK))
            except trio.BrokenResourceError as error:
                raise ConnectionClosedError(
                    f"TCP connection reset by remote peer: {error}", transport="tcp"
                ) from error
            except trio.ClosedResourceError:
                return b""
            offset = 0
        chunk, offset = compute_take(data, offset, n)
        if offset >= len(data):
            data, offset = b"", 0  # drop the reference to a consumed buffer
        self._dmchain_data = data
        self._dmchain_offset = offset
        return chunk


def install_buffered_tcp_reads() -> None:
    """Make every py-libp2p TCP stream of this process read in ``READ_CHUNK`` pieces.

    Idempotent. Applies to streams created afterwards and to existing ones
    (the method is looked up on the class; the original keeps no buffer).
    """
    if getattr(TrioTCPStream, _INSTALLED_ATTR, False):
        return
    TrioTCPStream.read = _buffered_read  # type: ignore[method-assign]
    setattr(TrioTCPStream, _INSTALLED_ATTR, True)
