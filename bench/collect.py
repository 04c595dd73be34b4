"""Read back what the cluster did with the load: per-transaction status and blocks.

Per transaction, the ingress node's tracker (``GET /v1/tx/{hash}``) holds the
outcome and the node's wall-clock times ``confirmed_ms`` (the node executed
the block) and ``settled_ms`` (a PoS checkpoint covering it settled). Blocks
(``GET /v1/blocks/{h}``) list committed transaction hashes, so loss is
detected from the chain itself, independently of any tracker.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio

MAX_NODE_FAILURES = 3
# While the load runs, a transaction's status is first read this long after it
# was sent, then again after as long as its age each time until it settled (a
# node keeps only its most recently settled records, ``node/tracker.py``).
READ_AGE_MS = 5_000.0
READ_INTERVAL_S = 2.0
MAX_READ_PER_ROUND = 20_000
STATUS_TIMEOUT_S = 10.0
STATUS_BATCH = 500
MAX_BLOCKS = 200_000
BLOCK_READERS = 4


@dataclass(frozen=True)
class TxStatus:
    """The ingress node's view of one transaction."""

    status: str
    submitted_ms: int
    confirmed_ms: int
    settled_ms: int
    height: int
    block_hash: str


UNKNOWN = TxStatus("unknown", 0, 0, 0, 0, "")


def compute_status(doc: dict[str, Any] | None) -> TxStatus:
    """Return the TxStatus of a ``/v1/tx`` document (UNKNOWN for None or junk)."""
    if not isinstance(doc, dict):
        return UNKNOWN

    def num(key: str) -> int:
        value = doc.get(key, 0)
        return value if isinstance(value, int) else 0

    return TxStatus(
        str(doc.get("status", "unknown")),
        num("submitted_ms"),
        num("confirmed_ms"),
        num("settled_ms"),
        num("height"),
        str(doc.get("block_hash", "")),
    )


async def _post_json(client: httpx.AsyncClient, path: str, body: Any) -> Any:
    return await _request_json(client, "POST", path, body)


async def _get_json(client: httpx.AsyncClient, path: str) -> Any:
    return await _request_json(client, "GET", path, None)


async def _request_json(client: httpx.AsyncClient, method: str, path: str, body: Any) -> Any:
    """Return the JSON of a 200 answer, or None (transport error, other status, not JSON)."""
    try:
        response = await client.request(method, path, json=body)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


class StatusClients:
    """One keep-alive HTTP client per node, opened on first use and kept until
    :meth:`aclose`: building a client costs milliseconds of CPU (an SSL
    context), taken from the cores the nodes run on."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self._clients: dict[int, httpx.AsyncClient] = {}

    def get(self, node: int) -> httpx.AsyncClient:
        """Return node ``node``'s client (the same one on every call until closed)."""
        client = self._clients.get(node)
        if client is None:
            client = httpx.AsyncClient(base_url=self.urls[node], timeout=STATUS_TIMEOUT_S)
            self._clients[node] = client
        return client

    async def aclose(self) -> None:
        """Close every client opened so far."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()


async def process_fetch_statuses(
    urls: list[str],
    wanted: list[tuple[int, bytes]],
    fallback: int,
    clients: StatusClients | None = None,
) -> list[TxStatus]:
    """Return the status of each (node, tx hash) from that node, in order.

    Statuses are read :data:`STATUS_BATCH` at a time (``POST /v1/txs/status``).
    A node that fails :data:`MAX_NODE_FAILURES` requests in a row (overloaded
    or gone) is given up on; its transactions are then read from node
    ``fallback``, which answers from its ledger receipts (outcome and height,
    no times). ``clients`` (kept open by the caller) are used if given, else
    clients are opened for this call and closed at its end.
    """
    if clients is None:
        own = StatusClients(urls)
        try:
            return await process_fetch_statuses(urls, wanted, fallback, own)
        finally:
            await own.aclose()
    out: list[TxStatus] = [UNKNOWN] * len(wanted)
    by_node: dict[int, list[int]] = {}
    for i, (node, _h) in enumerate(wanted):
        by_node.setdefault(node, []).append(i)
    left_over: list[int] = []

    async def fetch(client: httpx.AsyncClient, indices: list[int]) -> bool:
        body = {"hashes": [wanted[i][1].hex() for i in indices]}
        doc = await _post_json(client, "/v1/txs/status", body)
        statuses = doc.get("statuses") if isinstance(doc, dict) else None
        if not isinstance(statuses, list) or len(statuses) != len(indices):
            return False
        for i, item in zip(indices, statuses, strict=True):
            out[i] = compute_status(item)
        return True

    async def fetch_node(client: httpx.AsyncClient, indices: list[int]) -> None:
        failures = 0
        for k in range(0, len(indices), STATUS_BATCH):
            if failures >= MAX_NODE_FAILURES:
                left_over.extend(indices[k:])
                return
            chunk = indices[k : k + STATUS_BATCH]
            if await fetch(client, chunk):
                failures = 0
            else:
                failures += 1
                left_over.extend(chunk)

    async def fetch_from(node: int, indices: list[int]) -> None:
        await fetch_node(clients.get(node), indices)

    async with trio.open_nursery() as nursery:
        for node, indices in by_node.items():
            nursery.start_soon(fetch_from, node, indices)
    if left_over:
        retry, left_over = sorted(left_over), []
        await fetch_from(fallback, retry)
    return out


class SettledReader:
    """Reads sent transactions' statuses while the load runs, keeping the settled ones.

    A node forgets the earliest of its settled records once it holds more
    than its bound, so a run longer than a few minutes must read them as it
    goes. :meth:`process_run` (until cancelled) reads, every
    :data:`READ_INTERVAL_S`, each admitted transaction that became due: first
    :data:`READ_AGE_MS` after it was sent, and while it has not settled again
    after as long as its age. ``settled`` maps plan index -> the status read
    once it settled; what is missing from it at the end is read afterwards.
    """

    def __init__(
        self,
        urls: list[str],
        targets: Sequence[tuple[int, bytes]],
        fallback: int,
        wanted: Callable[[int], bool],
    ) -> None:
        self.urls = urls
        self.targets = targets
        self.fallback = fallback
        self.wanted = wanted
        self.settled: dict[int, TxStatus] = {}
        self.rounds = 0
        self._due: list[tuple[float, int]] = []
        self._cursor = 0

    def process_sent(
        self, first: int, outcome: Sequence[str | None], send_ms: Sequence[float]
    ) -> None:
        """Queue every wanted admitted transaction from ``first`` on, in plan order, up to
        the first one not answered yet."""
        self._cursor = max(self._cursor, first)
        while self._cursor < len(outcome) and outcome[self._cursor] is not None:
            i = self._cursor
            if outcome[i] == "" and self.wanted(i) and not math.isnan(send_ms[i]):
                heapq.heappush(self._due, (send_ms[i] + READ_AGE_MS, i))
            self._cursor += 1

    def get_due(self, now_ms: float) -> list[int]:
        """Return (and take off the queue) the transactions due at ``now_ms``, oldest first."""
        due: list[int] = []
        while self._due and self._due[0][0] <= now_ms and len(due) < MAX_READ_PER_ROUND:
            due.append(heapq.heappop(self._due)[1])
        return due

    def process_read(
        self, due: list[int], statuses: list[TxStatus], send_ms: Sequence[float], now_ms: float
    ) -> None:
        """Keep the settled statuses; queue the others again after as long as their age."""
        for i, status in zip(due, statuses, strict=True):
            if status.settled_ms > 0:
                self.settled[i] = status
            else:
                age = max(READ_AGE_MS, now_ms - send_ms[i])
                heapq.heappush(self._due, (now_ms + age, i))

    async def process_run(
        self, first: int, outcome: Sequence[str | None], send_ms: Sequence[float]
    ) -> None:
        """Read due statuses every :data:`READ_INTERVAL_S` until cancelled."""
        clients = StatusClients(self.urls)
        try:
            while True:
                await trio.sleep(READ_INTERVAL_S)
                self.process_sent(first, outcome, send_ms)
                due = self.get_due(time.time() * 1000)
                if not due:
                    continue
                fetched = await process_fetch_statuses(
                    self.urls, [self.targets[i] for i in due], self.fallback, clients
                )
                self.process_read(due, fetched, send_ms, time.time() * 1000)
                self.rounds += 1
        finally:
            with trio.CancelScope(shield=True):
                await clients.aclose()


async def process_fetch_blocks(url: str, first: int, last: int) -> dict[int, dict[str, Any]]:
    """Return blocks ``first..last`` from one node (missing heights are left out)."""
    if last - first + 1 > MAX_BLOCKS:
        first = last - MAX_BLOCKS + 1
    out: dict[int, dict[str, Any]] = {}
    heights = list(range(max(1, first), last + 1))
    limits = httpx.Limits(max_connections=BLOCK_READERS)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:

        async def reader(k: int) -> None:
            for height in heights[k::BLOCK_READERS]:
                doc = await _get_json(client, f"/v1/blocks/{height}")
                if isinstance(doc, dict):
                    out[height] = doc

        async with trio.open_nursery() as nursery:
            for k in range(BLOCK_READERS):
                nursery.start_soon(reader, k)
    return out


async def get_statuses(urls: list[str]) -> list[dict[str, Any] | None]:
    """Return every node's ``/v1/status`` document (None where it does not answer)."""
    out: list[dict[str, Any] | None] = [None] * len(urls)

    async def one(i: int) -> None:
        async with httpx.AsyncClient(base_url=urls[i], timeout=5.0) as client:
            out[i] = await get_status(client)

    async with trio.open_nursery() as nursery:
        for i in range(len(urls)):
            nursery.start_soon(one, i)
    return out


async def get_status(client: httpx.AsyncClient) -> dict[str, Any] | None:
    """Return the ``/v1/status`` document of the node ``client`` is bound to, or None."""
    doc = await _get_json(client, "/v1/status")
    return doc if isinstance(doc, dict) else None


async def get_metric(client: httpx.AsyncClient, name: str) -> float | None:
    """Return one un-labelled sample of the Prometheus text of ``client``'s node, or None."""
    try:
        text = (await client.get("/metrics")).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            try:
                return float(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


async def process_wait_drained(
    urls: list[str],
    target_height: Callable[[list[dict[str, Any] | None]], int],
    timeout_s: float,
    on_poll: Callable[[list[dict[str, Any] | None]], None] | None = None,
) -> bool:
    """Wait until every node's mempool and pool are empty and every node has
    settled at least ``target_height(statuses)``; True if that happened in time."""
    with trio.move_on_after(timeout_s):
        while True:
            statuses = await get_statuses(urls)
            if on_poll is not None:
                on_poll(statuses)
            target = target_height(statuses)
            if all(
                s is not None
                and s.get("mempool", 1) == 0
                and s.get("pool", 1) == 0
                and int(s.get("settled_height", 0)) >= target
                for s in statuses
            ):
                return True
            await trio.sleep(0.5)
    return False
