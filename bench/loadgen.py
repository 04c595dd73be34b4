"""Open-loop load: send pre-signed transactions on a fixed schedule.

Transaction ``i`` of a plan is due at ``start + i / rate``. One trio task per
target node wakes on a fixed cadence of ``tick_s``, takes every due
transaction of its node and posts them as one ``POST /v1/txs`` request
(batching amortises the HTTP cost; bench.txpost keeps the client's share
small) without waiting for earlier requests to finish (at most
``max_in_flight`` requests per node; beyond that
due transactions wait for the next tick and their lag is recorded). Sending
never waits for confirmations. Each transaction's submit time is the client
wall clock (``time.time()``) read just before the request carrying it is
sent; its schedule lag is that moment minus its due time.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import trio

from bench.txpost import PostError, TxPoster
from bench.workload import PlannedTx
from consensus.invariant import require

MAX_BATCH = 500
ACCEPTED = ""


@dataclass
class SendLog:
    """What happened to each planned transaction, indexed like the plan."""

    send_ms: list[float]
    lag_ms: list[float]
    outcome: list[str | None]
    requests: int = 0
    request_errors: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    refused: int = 0
    last_accepted: int | None = None

    def get_accepted_count(self) -> int:
        """Return how many transactions a node admitted."""
        return self.answered - self.refused

    def process_outcome(self, i: int, code: str) -> None:
        """Record the answer for transaction ``i`` (ACCEPTED or an error code).

        Keeps the running counts the progress line and the prober read, so
        neither scans the plan while the load runs.
        """
        require(self.outcome[i] is None, "a transaction is answered once")
        self.outcome[i] = code
        self.answered += 1
        if code == ACCEPTED:
            if self.last_accepted is None or i > self.last_accepted:
                self.last_accepted = i
        else:
            self.refused += 1
            self.errors[code] = self.errors.get(code, 0) + 1


async def _post_batch(
    poster: TxPoster, plan: list[PlannedTx], indices: list[int], log: SendLog
) -> None:
    body = ('{"txs":["' + '","'.join(plan[i].hex for i in indices) + '"]}').encode()
    now_ms = time.time() * 1000
    for i in indices:
        log.send_ms[i] = now_ms
    log.requests += 1
    results = None
    failure = None
    try:
        status, answer = await poster.post("/v1/txs", body)
        doc = json.loads(answer) if status == 200 else None
        results = doc.get("results") if isinstance(doc, dict) else None
    except PostError as exc:
        failure = f"request: {exc}"
    except ValueError:
        failure = "request: answer is not JSON"
    if failure is not None:
        log.errors[failure] = log.errors.get(failure, 0) + 1
    if not isinstance(results, list) or len(results) != len(indices):
        log.request_errors += 1
        for i in indices:
            log.process_outcome(i, "request_failed")
        return
    for i, result in zip(indices, results, strict=True):
        if isinstance(result, dict) and result.get("hash") == plan[i].tx_hash.hex():
            log.process_outcome(i, ACCEPTED)
        else:
            code = str(result.get("error", "bad_result")) if isinstance(result, dict) else "bad"
            log.process_outcome(i, code)


async def _node_sender(
    poster: TxPoster,
    plan: list[PlannedTx],
    indices: list[int],
    due: Callable[[int], float],
    log: SendLog,
    tick_s: float,
    max_in_flight: int,
) -> None:
    in_flight = 0

    async def post(batch: list[int]) -> None:
        nonlocal in_flight
        try:
            await _post_batch(poster, plan, batch, log)
        finally:
            in_flight -= 1

    async with trio.open_nursery() as nursery:
        pos = 0
        tick = 0
        while pos < len(indices):
            now = trio.current_time()
            while in_flight < max_in_flight and pos < len(indices):
                end = pos
                while end < len(indices) and end - pos < MAX_BATCH and due(indices[end]) <= now:
                    end += 1
                if end == pos:
                    break
                batch = indices[pos:end]
                for i in batch:
                    log.lag_ms[i] = (now - due(i)) * 1000
                pos = end
                in_flight += 1
                nursery.start_soon(post, batch)
            tick = max(tick + 1, math.floor((now - due(0)) / tick_s) + 1)
            await trio.sleep_until(due(0) + tick * tick_s)


async def process_send_plan(
    urls: list[str],
    plan: list[PlannedTx],
    rate: float,
    *,
    tick_s: float = 0.1,
    max_in_flight: int = 4,
    log: SendLog | None = None,
) -> SendLog:
    """Send ``plan`` open-loop at ``rate`` tx/s to ``urls[tx.node]``; returns the log.

    ``log`` (sized like ``plan``) may be passed in to watch progress while it
    runs. Returns when every transaction has been sent and answered.
    """
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError("rate must be a positive number of transactions per second")
    if log is None:
        log = new_log(len(plan))
    if len(log.outcome) != len(plan):
        raise ValueError("the send log must be sized like the plan")
    by_node: dict[int, list[int]] = {}
    for i, tx in enumerate(plan):
        by_node.setdefault(tx.node, []).append(i)
    posters = {
        node: TxPoster(urls[node], timeout_s=30.0, max_connections=max_in_flight)
        for node in by_node
    }
    async with AsyncExitStack() as stack:
        for poster in posters.values():
            stack.push_async_callback(poster.aclose)
        start = trio.current_time() + 0.05

        def due(i: int) -> float:
            return start + i / rate

        async with trio.open_nursery() as nursery:
            for node, indices in sorted(by_node.items()):
                nursery.start_soon(
                    _node_sender, posters[node], plan, indices, due, log, tick_s, max_in_flight
                )
    return log


def new_log(size: int) -> SendLog:
    """Return an empty send log for a plan of ``size`` transactions."""
    return SendLog([math.nan] * size, [math.nan] * size, [None] * size)
