"""The node's HTTP/1.1 server: the ASGI app over h11 on trio, one task per connection.

Each connection's task reads a request, runs the app in that same task and
writes the answer, so a small request costs one socket read, one write and a
few h11 calls. The general-purpose server this replaces (Hypercorn's trio
worker) spent about 1.4 ms of CPU per request on task hand-offs and timers
(``python -m bench.http_ingress``), thirteen times the Ed25519 verification a
submitted transaction needs.

Bounds: open connections (over the limit, a connection gets 503 and is
closed), the request head (431), the time a request's head or next body
chunk may take, the idle time of a keep-alive connection, and the time one
write may take. The app bounds bodies itself (``http_max_body_bytes``).

Scope: HTTP/1.1 and 1.0 over plain TCP, keep-alive, chunked and
``Content-Length`` bodies both ways, ``Expect: 100-continue``, HEAD. No
HTTP/2, TLS or lifespan events (the node's app registers no lifespan
handlers). After the answer, the server reads and discards what the app left
of the request body, up to 64 KiB; a longer rest closes the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import h11
import trio

logger = logging.getLogger("dmchain.http.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class HttpLimits:
    """Bounds of the HTTP server. Sizes in bytes, times in seconds."""

    max_connections: int = 512  # with LevelDB's 256 open files, under a 1,024-descriptor limit
    max_head_bytes: int = 16 * 1024
    read_size: int = 64 * 1024
    keep_alive_timeout: float = 30.0
    read_timeout: float = 20.0
    write_timeout: float = 60.0

    def get_error(self) -> str | None:
        """Return why these limits are unusable, or None."""
        if self.max_connections < 1:
            return "max_connections must be positive"
        if self.max_head_bytes < 1024 or self.read_size < 1024:
            return "max_head_bytes and read_size must be at least 1024"
        if min(self.keep_alive_timeout, self.read_timeout, self.write_timeout) <= 0:
            return "timeouts must be positive"
        return None


class _ClientGoneError(Exception):
    """The client closed the connection, timed out, or broke the protocol.

    ``status`` is the answer a protocol error deserves (400, or 431 for a head
    over the bound), 0 where nothing can be answered.
    """

    def __init__(self, reason: str, status: int = 0) -> None:
        super().__init__(reason)
        self.status = status


def _canned(status: int, reason: bytes) -> bytes:
    body = b'{"error":"' + reason + b'"}'
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s" % (status, reason, len(body), body)
    )


DISCARD_BYTES = 64 * 1024  # more unread body than this closes the connection
LINGER_S = 1.0
LINGER_BYTES = 256 * 1024
LINGER_CHUNK = 16 * 1024
BUSY_ANSWER = _canned(503, b"busy")
ERROR_ANSWERS = {
    400: _canned(400, b"bad request"),
    431: _canned(431, b"request head too large"),
}


class _Exchange:
    """One request and its answer: the ASGI ``receive`` and ``send`` of one app call."""

    def __init__(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        request: h11.Request,
        limits: HttpLimits,
    ) -> None:
        self.conn = conn
        self.stream = stream
        self.limits = limits
        self.is_head = request.method == b"HEAD"
        self.body_done = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started = False  # http.response.start received
        self.head_sent = False
        self.finished = False  # the whole answer is written
        self.broken = False  # a read or write failed: the connection must close

    async def receive(self) -> Message:
        """Return the next body chunk; after the last, wait until the client leaves."""
        if self.body_done or self.broken:
            await self._wait_disconnect()
            return {"type": "http.disconnect"}
        if self.conn.they_are_waiting_for_100_continue:
            await self._write(
                self.conn.send(h11.InformationalResponse(status_code=100, headers=[]))
            )
        try:
            event = await _read_event(self.conn, self.stream, self.limits, self.limits.read_timeout)
        except _ClientGoneError:
            self.broken = True
            return {"type": "http.disconnect"}
        if isinstance(event, h11.Data):
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        if isinstance(event, h11.EndOfMessage):
            self.body_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        self.broken = True
        return {"type": "http.disconnect"}

    async def _wait_disconnect(self) -> None:
        while not self.broken:
            try:
                data = await self.stream.receive_some(self.limits.read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.broken = True
                return
            try:
                self.conn.receive_data(data)  # a pipelined request: h11 keeps it
            except h11.RemoteProtocolError:
                self.broken = True
            if len(self.conn.trailing_data[0]) > self.limits.max_head_bytes + self.limits.read_size:
                self.broken = True  # more pipelined bytes than one request head may take

    async def send(self, message: Message) -> None:
        """Write the answer: the head with the first body chunk, then each chunk."""
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started or self.finished:
            raise RuntimeError("http.response.body outside a response")
        if self.broken:
            raise OSError("the client closed the connection")
        out = bytearray()
        if not self.head_sent:
            self.head_sent = True
            out += self.conn.send(h11.Response(status_code=self.status, headers=self.headers))
        body = message.get("body", b"")
        if body and not self.is_head:
            out += self.conn.send(h11.Data(data=body))
        if not message.get("more_body", False):
            out += self.conn.send(h11.EndOfMessage())
            self.finished = True
        if out:
            await self._write(bytes(out))

    async def _write(self, data: bytes) -> None:
        with trio.move_on_after(self.limits.write_timeout) as scope:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.broken = True
                raise OSError("the client closed the connection") from exc
        if scope.cancelled_caught:
            self.broken = True
            raise OSError("the client did not read the answer in time")


async def _read_event(
    conn: h11.Connection, stream: trio.SocketStream, limits: HttpLimits, timeout: float
) -> Any:
    """Return h11's next event, reading from ``stream`` as needed (``timeout`` per read)."""
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = 431 if exc.error_status_hint == 431 else 400
            raise _ClientGoneError(f"protocol error: {exc}", status) from exc
        if event is not h11.NEED_DATA:
            return event
        with trio.move_on_after(timeout):
            try:
                data = await stream.receive_some(limits.read_size)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise _ClientGoneError("connection reset") from exc
            conn.receive_data(data)  # b"" marks the end of the stream
            continue
        raise _ClientGoneError("timed out")


def compute_scope(request: h11.Request, stream: trio.SocketStream) -> Scope:
    """Return the ASGI HTTP scope of ``request`` received on ``stream``."""
    raw_path, _, query = bytes(request.target).partition(b"?")
    try:
        client = stream.socket.getpeername()[:2]
        server = stream.socket.getsockname()[:2]
    except OSError:
        client = server = None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": request.http_version.decode("ascii"),
        "method": request.method.decode("ascii"),
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii", errors="replace")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(bytes(name), bytes(value)) for name, value in request.headers],
        "client": client,
        "server": server,
    }


class HttpServer:
    """Serves one ASGI app; counts open connections against ``limits.max_connections``."""

    def __init__(self, app: AsgiApp, limits: HttpLimits | None = None) -> None:
        self.app = app
        self.limits = limits or HttpLimits()
        error = self.limits.get_error()
        if error is not None:
            raise ValueError(f"bad HTTP limits: {error}")
        self.open_connections = 0
        self.refused_connections = 0
        self.requests = 0
        self.listeners: Sequence[trio.SocketListener] = ()

    async def process_connection(self, stream: trio.SocketStream) -> None:
        """Serve requests on ``stream`` until the client leaves or a bound is hit; close it."""
        try:
            if self.open_connections >= self.limits.max_connections:
                self.refused_connections += 1
                if self.refused_connections % 1000 == 1:  # the first, then every 1000th
                    logger.warning(
                        "event=http_busy open=%d refused=%d",
                        self.open_connections,
                        self.refused_connections,
                    )
                await _answer_and_close(stream, BUSY_ANSWER)
                return
            self.open_connections += 1
            try:
                await self._serve(stream)
            finally:
                self.open_connections -= 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                await stream.aclose()

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)
        while True:
            try:
                event = await _read_event(conn, stream, self.limits, self.limits.keep_alive_timeout)
            except _ClientGoneError as exc:
                if exc.status and conn.our_state is h11.IDLE:
                    logger.warning("event=http_bad_request error=%s", exc)
                    await _answer_and_close(stream, ERROR_ANSWERS[exc.status])
                return
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed, or the peer closed mid-head
            self.requests += 1
            exchange = _Exchange(conn, stream, event, self.limits)
            await self._run_app(exchange, compute_scope(event, stream))
            if exchange.broken or not exchange.finished:
                return
            if not await self._is_body_finished(conn, stream):
                await _linger(stream)
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return  # the client or the app asked to close
            conn.start_next_cycle()

    async def _is_body_finished(self, conn: h11.Connection, stream: trio.SocketStream) -> bool:
        """Read and discard what the app left of the request body (a GET's empty
        body included), up to DISCARD_BYTES; True iff the body ended."""
        discarded = 0
        while conn.their_state is h11.SEND_BODY and discarded <= DISCARD_BYTES:
            try:
                event = await _read_event(conn, stream, self.limits, self.limits.read_timeout)
            except _ClientGoneError:
                return False
            if isinstance(event, h11.Data):
                discarded += len(event.data)
            elif not isinstance(event, h11.EndOfMessage):
                return False
        return conn.their_state is not h11.SEND_BODY

    async def _run_app(self, exchange: _Exchange, scope: Scope) -> None:
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except Exception:
            if not exchange.broken:  # a failure of the app, not a client that left
                logger.exception(
                    "event=http_app_error method=%s path=%s", scope["method"], scope["path"]
                )
            exchange.broken = exchange.broken or exchange.started
        if not exchange.started and not exchange.broken:
            await _send_error(exchange)
        elif not exchange.finished:
            exchange.broken = True


async def _answer_and_close(stream: trio.SocketStream, answer: bytes) -> None:
    """Send a canned answer, then :func:`_linger` before the caller closes."""
    with trio.move_on_after(LINGER_S):
        await stream.send_all(answer)
    await _linger(stream)


async def _linger(stream: trio.SocketStream) -> None:
    """End the answer and read what the client still sends (up to LINGER_S and
    LINGER_BYTES) before the caller closes: closing on unread bytes resets the
    connection, which can destroy the answer before the client reads it."""
    with trio.move_on_after(LINGER_S):
        try:
            await stream.send_eof()
            drained = 0
            while drained < LINGER_BYTES and (chunk := await stream.receive_some(LINGER_CHUNK)):
                drained += len(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


async def _send_error(exchange: _Exchange) -> None:
    """Answer 500 for an app that failed or returned before it answered."""
    body = b'{"error":"internal server error"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    try:
        await exchange.send({"type": "http.response.start", "status": 500, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": body})
    except OSError:
        exchange.broken = True


async def serve_http_app(
    app: AsgiApp,
    host: str,
    port: int,
    *,
    limits: HttpLimits | None = None,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; ``task_status`` gets the server."""
    server = HttpServer(app, limits)
    server.listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        task_status.started(server)
        await trio.serve_listeners(
            server.process_connection,
            server.listeners,
            handler_nursery=nursery,
        )
