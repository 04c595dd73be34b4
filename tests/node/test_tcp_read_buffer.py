"""Buffered reads on py-libp2p's TCP streams (node.tcp_read_buffer), over 127.0.0.1."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
import trio
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.io.trio import TrioTCPStream
from libp2p.io.utils import read_exactly

from node.tcp_read_buffer import READ_CHUNK, compute_take, install_buffered_tcp_reads


class _CountingStream:
    """A trio stream that counts ``receive_some`` calls."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.receives = 0

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self.receives += 1
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def _pair() -> tuple[trio.SocketStream, _CountingStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    await listeners[0].aclose()
    return client, _CountingStream(server)


def _stream(counting: _CountingStream) -> Any:
    install_buffered_tcp_reads()
    return TrioTCPStream(counting)  # type: ignore[arg-type]


@pytest.mark.parametrize(("offset", "n"), [(0, None), (0, 2), (3, 4), (8, 5), (9, 1), (0, 10)])
def test_take_never_returns_more_than_asked_or_left(offset: int, n: int | None) -> None:
    data = b"0123456789"
    chunk, end = compute_take(data, offset, n)
    assert chunk == data[offset : len(data) if n is None else offset + n]
    assert end == offset + len(chunk)


def test_messages_that_arrive_together_are_read_with_one_receive() -> None:
    async def main() -> None:
        client, counting = await _pair()
        stream = _stream(counting)
        bodies = [os.urandom(size) for size in (5, 300, 1)]
        await client.send_all(b"".join(len(b).to_bytes(2, "big") + b for b in bodies))
        await trio.sleep(0.05)  # all of it in the kernel's buffer
        for body in bodies:
            size = int.from_bytes(await read_exactly(stream, 2), "big")
            assert await read_exactly(stream, size) == body
        assert counting.receives == 1
        await client.aclose()
        assert await stream.read(10) == b""
        await stream.close()

    trio.run(main)


def test_a_read_larger_than_the_chunk_and_a_message_split_across_receives() -> None:
    async def main() -> None:
        client, counting = await _pair()
        stream = _stream(counting)
        big = os.urandom(3 * READ_CHUNK + 17)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, big)
            assert await read_exactly(stream, len(big)) == big
        await client.send_all(b"ab")
        assert await read_exactly(stream, 1) == b"a"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_all, b"cd")
            assert await read_exactly(stream, 3) == b"bcd"
        assert await stream.read(0) == b""
        await client.aclose()
        with pytest.raises(IncompleteReadError):
            await read_exactly(stream, 4)
        await stream.close()

    trio.run(main)


def test_a_reset_connection_raises_and_a_locally_closed_one_reads_empty() -> None:
    async def main() -> None:
        client, counting = await _pair()
        stream = _stream(counting)
        client.socket.setsockopt(
            trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        await client.aclose()  # linger 0: the peer sees a reset
        with pytest.raises(ConnectionClosedError):
            await stream.read(10)
        await stream.close()
        assert await stream.read(10) == b""

    trio.run(main)
