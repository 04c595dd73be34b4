"""A lean HTTP/1.1 client for the load generator's ``POST /v1/txs``.

The load generator shares the cores with the nodes it measures, so its cost
per request is taken from them. A general client (httpx) spends about 1.8 ms
of CPU per small request; this one keeps one h11 connection per in-flight
request slot and does only what the load needs: a JSON body out, a status
code and a bounded body back.
"""

from __future__ import annotations

import select
from urllib.parse import urlsplit

import h11
import trio

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
READ_CHUNK = 65536
# A connection idle this long is closed rather than reused: well under the
# node's keep-alive timeout (30 s), so the server never closes one under a
# request that is already on its way.
IDLE_LIMIT_S = 10.0


class PostError(Exception):
    """The request did not get a whole answer; ``str()`` is a short fixed reason."""


class TxPoster:
    """Keep-alive connections to one node; ``post`` uses an idle one or opens one."""

    def __init__(self, base_url: str, *, timeout_s: float, max_connections: int) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"the load generator posts over plain http, not {base_url!r}")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._host_header = parts.netloc.encode()
        self._timeout_s = timeout_s
        self._idle: list[tuple[trio.SocketStream, h11.Connection, float]] = []
        self._open = 0
        self._max = max_connections

    async def post(self, target: str, body: bytes) -> tuple[int, bytes]:
        """Send one POST and return (status, body); raises PostError if it fails.

        A connection whose exchange failed is closed; one that finished
        cleanly is kept for the next request. At most ``max_connections``
        are open at once.
        """
        stream, conn = await self._get_connection()
        try:
            with trio.fail_after(self._timeout_s):
                status, answer = await self._exchange(stream, conn, target, body)
        except BaseException as exc:
            await self._close(stream)
            reason = _get_failure_reason(exc)
            if reason is None:
                raise
            raise PostError(reason) from exc
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._idle.append((stream, conn, trio.current_time()))
        else:
            await self._close(stream)
        return status, answer

    async def _get_connection(self) -> tuple[trio.SocketStream, h11.Connection]:
        """Return the freshest reusable idle connection, or open a new one."""
        while self._idle:
            stream, conn, since = self._idle.pop()
            if trio.current_time() - since < IDLE_LIMIT_S and not _is_readable(stream):
                return stream, conn
            # idle too long, or the server closed it (an idle connection
            # that is readable holds an EOF or bytes nobody asked for)
            await self._close(stream)
        if self._open >= self._max:
            raise PostError("all connections busy")
        try:
            with trio.fail_after(self._timeout_s):
                stream = await trio.open_tcp_stream(self._host, self._port)
        except trio.TooSlowError as exc:
            raise PostError("connect timeout") from exc
        except OSError as exc:
            raise PostError("connect failed") from exc
        self._open += 1
        return stream, h11.Connection(h11.CLIENT)

    async def aclose(self) -> None:
        """Close every idle connection."""
        while self._idle:
            stream, _, _ = self._idle.pop()
            await self._close(stream)

    async def _close(self, stream: trio.SocketStream) -> None:
        self._open -= 1
        with trio.CancelScope(shield=True):
            await stream.aclose()

    async def _exchange(
        self, stream: trio.SocketStream, conn: h11.Connection, target: str, body: bytes
    ) -> tuple[int, bytes]:
        headers = [
            (b"host", self._host_header),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        out = conn.send(h11.Request(method="POST", target=target, headers=headers))
        out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        await stream.send_all(out)
        status = 0
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(READ_CHUNK)
                conn.receive_data(data)  # b"" marks the peer's close
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_RESPONSE_BYTES:
                    raise h11.LocalProtocolError(f"answer over {MAX_RESPONSE_BYTES} bytes")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return status, b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("closed before the answer ended")


def _get_failure_reason(exc: BaseException) -> str | None:
    """Return the PostError reason for a failed exchange, or None to let ``exc`` through."""
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    if isinstance(exc, (OSError, trio.BrokenResourceError)):
        return "connection lost"
    if isinstance(exc, h11.ProtocolError):
        return "protocol error"
    return None


def _is_readable(stream: trio.SocketStream) -> bool:
    """Return True iff the socket has something to read right now (never blocks).

    ``poll``, not ``select``: any descriptor number works, also above 1023.
    """
    poller = select.poll()
    poller.register(stream.socket.fileno(), select.POLLIN)
    return bool(poller.poll(0))
