"""The node's HTTP server (node.http_server) against raw sockets on 127.0.0.1."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio

from node.http_server import HttpLimits, HttpServer, serve_http_app

# What /wait-disconnect's receive() returned once the answer was sent.
AFTER_ANSWER: list[str] = []


async def _echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the request's method, path, query and body; some paths misbehave."""
    path = scope["path"]
    if path == "/fail-early":
        raise RuntimeError("app failed before answering")
    if path == "/fail-os":
        raise OSError("disk full")  # the app's own I/O error, not the client's
    body = b""
    if path != "/ignore-body":
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
    doc = {
        "method": scope["method"],
        "path": path,
        "query": scope["query_string"].decode(),
        "body": body.decode(),
        "client": list(scope["client"]),
    }
    answer = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json")]
    if path == "/stream":  # no content-length: chunked, in three parts
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for part in (b"one,", b"two,", b"three"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    headers.append((b"content-length", b"%d" % len(answer)))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/fail-late":
        await send({"type": "http.response.body", "body": answer[:5], "more_body": True})
        raise RuntimeError("app failed mid-answer")
    if path == "/wait-disconnect":
        await send({"type": "http.response.body", "body": answer, "more_body": True})
        AFTER_ANSWER.append((await receive())["type"])
        return
    await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def _serving(limits: HttpLimits | None = None) -> AsyncIterator[tuple[str, HttpServer]]:
    async with trio.open_nursery() as nursery:
        serve = functools.partial(serve_http_app, limits=limits)
        server = await nursery.start(serve, _echo_app, "127.0.0.1", 0)
        yield "127.0.0.1", server
        nursery.cancel_scope.cancel()


def _port(server: HttpServer) -> int:
    assert server.listeners, "server has no listener"
    return int(server.listeners[0].socket.getsockname()[1])


async def _exchange(port: int, raw: bytes) -> bytes:
    """Send ``raw`` and return everything read until the server closes (or 2 s pass)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(raw)
    got = b""
    with trio.move_on_after(2.0):
        while chunk := await stream.receive_some(65536):
            got += chunk
    await stream.aclose()
    return got


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async with _serving() as (host, server):
        async with httpx.AsyncClient(base_url=f"http://{host}:{_port(server)}") as client:
            first = await client.post("/a?x=1", content=b"hello")
            second = await client.post("/b/%7Eb", content=b"world")
        assert first.status_code == 200 and first.json()["body"] == "hello"
        assert first.json()["query"] == "x=1"
        assert second.json()["path"] == "/b/~b"
        assert first.json()["client"][1] == second.json()["client"][1]  # same connection
        assert server.requests == 2


async def test_chunked_request_body_and_chunked_answer() -> None:
    async with _serving() as (host, server):

        async def parts() -> AsyncIterator[bytes]:
            for part in (b"ab", b"cd", b"ef"):
                yield part

        async with httpx.AsyncClient(base_url=f"http://{host}:{_port(server)}") as client:
            echoed = await client.post("/echo", content=parts())
            streamed = await client.get("/stream")
        assert echoed.json()["body"] == "abcdef"
        assert streamed.headers["transfer-encoding"] == "chunked"
        assert streamed.content == b"one,two,three"


async def test_head_answer_has_no_body() -> None:
    async with _serving() as (_host, server):
        got = await _exchange(
            _port(server), b"HEAD /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
        )
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length:" in head.lower()
    assert body == b""


async def test_expect_100_continue_gets_the_interim_answer_before_the_body() -> None:
    async with _serving() as (_host, server):
        stream = await trio.open_tcp_stream("127.0.0.1", _port(server))
        await stream.send_all(
            b"POST /x HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n"
        )
        with trio.fail_after(2.0):
            interim = await stream.receive_some(65536)
        assert interim.startswith(b"HTTP/1.1 100")
        await stream.send_all(b"abc")
        with trio.fail_after(2.0):
            answer = await stream.receive_some(65536)
        await stream.aclose()
    assert answer.startswith(b"HTTP/1.1 200") and b'"body": "abc"' in answer


async def test_malformed_request_gets_400_and_the_connection_closes() -> None:
    async with _serving() as (_host, server):
        got = await _exchange(_port(server), b"NOT HTTP AT ALL\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 400")


async def test_oversized_head_gets_431() -> None:
    async with _serving(HttpLimits(max_head_bytes=2048, read_size=1024)) as (_host, server):
        raw = b"GET /x HTTP/1.1\r\nhost: a\r\nx-big: " + b"a" * 8192 + b"\r\n\r\n"
        got = await _exchange(_port(server), raw)
    assert got.startswith(b"HTTP/1.1 431")


async def test_app_failing_before_answering_gets_500_and_the_connection_stays_usable() -> None:
    async with _serving() as (host, server):
        async with httpx.AsyncClient(base_url=f"http://{host}:{_port(server)}") as client:
            failed = await client.get("/fail-early")
            failed_io = await client.get("/fail-os")
            after = await client.get("/fine")
        assert failed.status_code == 500 and failed_io.status_code == 500
        assert after.status_code == 200
        assert failed.json() == {"error": "internal server error"}


async def test_app_failing_mid_answer_closes_the_connection() -> None:
    async with _serving() as (_host, server):
        got = await _exchange(_port(server), b"GET /fail-late HTTP/1.1\r\nhost: a\r\n\r\n")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert len(body) == 5  # cut short: the client sees fewer bytes than content-length


async def test_a_body_the_app_did_not_read_is_discarded_and_the_connection_kept() -> None:
    async with _serving() as (host, server):
        async with httpx.AsyncClient(base_url=f"http://{host}:{_port(server)}") as client:
            answers = [await client.get("/ignore-body") for _ in range(3)]
            answers.append(await client.post("/ignore-body", content=b"x" * 1000))
            answers.append(await client.get("/ignore-body"))
        assert [a.status_code for a in answers] == [200] * 5
        assert len({a.json()["client"][1] for a in answers}) == 1  # one connection throughout


async def test_a_long_unread_body_closes_the_connection_after_the_answer() -> None:
    async with _serving() as (_host, server):
        body = b"x" * (200 * 1024)
        head = b"POST /ignore-body HTTP/1.1\r\nhost: a\r\ncontent-length: %d\r\n\r\n" % len(body)
        stream = await trio.open_tcp_stream("127.0.0.1", _port(server))
        got = b""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, head + body)
            with trio.fail_after(5.0):
                while chunk := await stream.receive_some(65536):  # ends when the server closes
                    got += chunk
        await stream.aclose()
    assert got.startswith(b"HTTP/1.1 200")
    assert server.open_connections == 0


async def test_receive_reports_the_client_leaving() -> None:
    AFTER_ANSWER.clear()
    async with _serving() as (_host, server):
        stream = await trio.open_tcp_stream("127.0.0.1", _port(server))
        await stream.send_all(b"GET /wait-disconnect HTTP/1.1\r\nhost: a\r\n\r\n")
        with trio.fail_after(2.0):
            assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 200")
        await stream.aclose()
        with trio.fail_after(2.0):
            while server.open_connections:
                await trio.sleep(0.01)
    assert AFTER_ANSWER == ["http.disconnect"]


async def test_idle_keep_alive_connection_is_closed() -> None:
    async with _serving(HttpLimits(keep_alive_timeout=0.2)) as (_host, server):
        stream = await trio.open_tcp_stream("127.0.0.1", _port(server))
        with trio.fail_after(2.0):
            assert await stream.receive_some(65536) == b""  # closed by the server
        await stream.aclose()


async def test_connections_over_the_bound_get_503() -> None:
    async with _serving(HttpLimits(max_connections=1)) as (_host, server):
        held = await trio.open_tcp_stream("127.0.0.1", _port(server))
        with trio.fail_after(2.0):
            while server.open_connections < 1:
                await trio.sleep(0.01)
        got = await _exchange(_port(server), b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        await held.aclose()
    assert got.startswith(b"HTTP/1.1 503")
    assert server.refused_connections == 1


def test_unusable_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        HttpServer(_echo_app, HttpLimits(max_connections=0))
