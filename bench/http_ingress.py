"""Measure the node HTTP API's CPU per transaction-submission request.

Usage: python -m bench.http_ingress [--requests N] [--txs-per-request K]

Serves the node's own HTTP app (``node.http_api.create_app`` under
``node.http_server.serve_http_app``, as a node runs it) in a child
process, over a service that admits every transaction without checking it,
so only the HTTP path is measured. Posts ``N`` ``POST /v1/txs`` requests of
``K`` transactions each over one keep-alive connection (``bench.txpost``, the
load generator's client) and reports:

- server CPU per request: the child's utime + stime from /proc;
- of which the app: the same request driven through the ASGI app in this
  process, with no server or socket;
- client CPU per request.

Clients that submit one transaction per request pay the server figure once
per transaction, on the validator's cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import subprocess
import sys
import time
from typing import Any, cast

import trio

from bench import procstats
from bench.txpost import PostError, TxPoster
from node.http_api import NodeService, create_app
from node.http_server import serve_http_app

TX_BYTES = 200  # about the size of a signed transfer
START_TIMEOUT_S = 30.0


class _AdmitAll:
    """The slice of a node's service that ``POST /v1/txs`` uses: admit everything."""

    max_body_bytes = 8 * 1024 * 1024

    def submit_tx(self, raw: bytes) -> bytes:
        return hashlib.sha256(raw).digest()


def _build_app() -> Any:
    return create_app(cast(NodeService, _AdmitAll()))


def _body(txs_per_request: int) -> bytes:
    tx = (b"\xab" * TX_BYTES).hex()
    return json.dumps({"txs": [tx] * txs_per_request}).encode()


async def _serve(port: int) -> None:
    await serve_http_app(_build_app(), "127.0.0.1", port)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _post_all(url: str, body: bytes, count: int, child_pid: int) -> tuple[int, int]:
    """Post ``count`` requests; return (server CPU us, client CPU us) spent on them."""
    poster = TxPoster(url, timeout_s=10.0, max_connections=1)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:  # the child is up once a request gets through
        try:
            await poster.post("/v1/txs", body)
            break
        except PostError:
            if time.monotonic() > deadline:
                raise
            await trio.sleep(0.1)
    for _ in range(min(100, count)):  # warm-up
        await poster.post("/v1/txs", body)
    server_before = procstats.get_cpu_us(child_pid)
    client_before = procstats.get_self_cpu_us()
    for _ in range(count):
        status, _ = await poster.post("/v1/txs", body)
        if status != 200:
            raise RuntimeError(f"the server answered {status}")
    server_after = procstats.get_cpu_us(child_pid)
    client_after = procstats.get_self_cpu_us()
    await poster.aclose()
    if server_before is None or server_after is None:
        raise RuntimeError("the server process is gone")
    return server_after - server_before, client_after - client_before


async def _app_cpu_us(body: bytes, count: int) -> float:
    """Return the app's CPU microseconds per request, driven through ASGI in-process."""
    app = _build_app()
    headers = [(b"host", b"bench"), (b"content-type", b"application/json")]
    headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/txs",
        "raw_path": b"/v1/txs",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }

    async def one() -> None:
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return pending.pop() if pending else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"the app answered {message['status']}")

        await app(dict(scope), receive, send)

    for _ in range(min(100, count)):
        await one()
    start = time.process_time()
    for _ in range(count):
        await one()
    return (time.process_time() - start) / count * 1e6


def compute_ingress_cost(requests: int, txs_per_request: int) -> dict[str, float]:
    """Run the measurement; return CPU microseconds per request (server, app, client)."""
    if requests < 1 or txs_per_request < 1:
        raise ValueError("requests and txs per request must be at least 1")
    port = _free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.http_ingress", "--serve", str(port)],
        stdin=subprocess.DEVNULL,
    )
    try:
        body = _body(txs_per_request)
        server_us, client_us = trio.run(
            _post_all, f"http://127.0.0.1:{port}", body, requests, child.pid
        )
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    app_us = trio.run(_app_cpu_us, body, requests)
    return {
        "server_us_per_request": server_us / requests,
        "app_us_per_request": app_us,
        "client_us_per_request": client_us / requests,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--txs-per-request", type=int, default=1)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        trio.run(_serve, args.serve)
        return 0
    print(
        f"http_ingress: {args.requests} requests of {args.txs_per_request} transaction(s), "
        "one keep-alive connection",
        flush=True,
    )
    cost = compute_ingress_cost(args.requests, args.txs_per_request)
    print(f"server (server + app)     {cost['server_us_per_request']:8.0f} us CPU per request")
    print(f"  of which the app         {cost['app_us_per_request']:8.0f} us")
    print(f"client (bench.txpost)     {cost['client_us_per_request']:8.0f} us CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
