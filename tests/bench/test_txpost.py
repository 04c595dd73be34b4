"""The load generator's HTTP client against a real socket server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import h11
import pytest
import trio

from bench import txpost
from bench.txpost import PostError, TxPoster

Handler = Callable[[trio.SocketStream, list[int]], Awaitable[None]]


async def _serve_h11(stream: trio.SocketStream, keep_alive: bool) -> None:
    conn = h11.Connection(h11.SERVER)
    while True:
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        answer = b'{"echo":"' + body + b'"}'
        headers = [("content-length", str(len(answer)))]
        if not keep_alive:
            headers.append(("connection", "close"))
        out = conn.send(h11.Response(status_code=200, headers=headers))
        out += conn.send(h11.Data(data=answer)) + conn.send(h11.EndOfMessage())
        await stream.send_all(out)
        if not keep_alive:
            await stream.aclose()
            return
        conn.start_next_cycle()


async def _start(nursery: trio.Nursery, handler: Handler) -> tuple[str, list[int]]:
    accepted: list[int] = []

    async def serve(stream: trio.SocketStream) -> None:
        accepted.append(1)
        await handler(stream, accepted)

    listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return f"http://127.0.0.1:{port}", accepted


async def test_posts_reuse_one_keep_alive_connection() -> None:
    async with trio.open_nursery() as nursery:
        url, accepted = await _start(nursery, lambda s, _: _serve_h11(s, keep_alive=True))
        poster = TxPoster(url, timeout_s=5.0, max_connections=2)
        for i in range(3):
            status, body = await poster.post("/v1/txs", f"tx{i}".encode())
            assert (status, body) == (200, f'{{"echo":"tx{i}"}}'.encode())
        assert len(accepted) == 1
        await poster.aclose()
        nursery.cancel_scope.cancel()


async def test_a_closed_connection_is_replaced() -> None:
    async with trio.open_nursery() as nursery:
        url, accepted = await _start(nursery, lambda s, _: _serve_h11(s, keep_alive=False))
        poster = TxPoster(url, timeout_s=5.0, max_connections=1)
        for _ in range(2):
            assert (await poster.post("/v1/txs", b"x"))[0] == 200
        assert len(accepted) == 2
        nursery.cancel_scope.cancel()


async def test_a_garbled_answer_is_an_error_and_frees_the_slot() -> None:
    async def garble(stream: trio.SocketStream, _: list[int]) -> None:
        await stream.receive_some(65536)
        await stream.send_all(b"this is not http\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        url, _ = await _start(nursery, garble)
        poster = TxPoster(url, timeout_s=5.0, max_connections=1)
        for _ in range(2):  # the failed connection no longer counts against the cap
            with pytest.raises(PostError) as failure:
                await poster.post("/v1/txs", b"x")
            assert "busy" not in str(failure.value)
        nursery.cancel_scope.cancel()


async def test_a_refused_connection_is_an_error() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens on the port any more
    poster = TxPoster(f"http://127.0.0.1:{port}", timeout_s=5.0, max_connections=1)
    with pytest.raises(PostError, match="connect"):
        await poster.post("/v1/txs", b"x")


def test_only_plain_http_urls_are_taken() -> None:
    with pytest.raises(ValueError):
        TxPoster("https://127.0.0.1:1", timeout_s=1.0, max_connections=1)


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def one_answer_then_close(stream: trio.SocketStream, _: list[int]) -> None:
        # answers as if keeping the connection alive, then closes it while idle
        conn = h11.Connection(h11.SERVER)
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
        out = conn.send(h11.Response(status_code=200, headers=[("content-length", "2")]))
        await stream.send_all(out + conn.send(h11.Data(data=b"ok")) + conn.send(h11.EndOfMessage()))
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        url, accepted = await _start(nursery, one_answer_then_close)
        poster = TxPoster(url, timeout_s=5.0, max_connections=1)
        assert await poster.post("/v1/txs", b"x") == (200, b"ok")
        await trio.sleep(0.1)  # the server's close reaches the idle connection
        assert await poster.post("/v1/txs", b"x") == (200, b"ok")
        assert len(accepted) == 2
        nursery.cancel_scope.cancel()


async def test_a_connection_idle_past_the_limit_is_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(txpost, "IDLE_LIMIT_S", 0.05)
    async with trio.open_nursery() as nursery:
        url, accepted = await _start(nursery, lambda s, _: _serve_h11(s, keep_alive=True))
        poster = TxPoster(url, timeout_s=5.0, max_connections=1)
        await poster.post("/v1/txs", b"x")
        await poster.post("/v1/txs", b"x")  # at once: reused
        await trio.sleep(0.1)
        await poster.post("/v1/txs", b"x")  # idle past the limit: a new connection
        assert len(accepted) == 2
        nursery.cancel_scope.cancel()
