"""The proxy service loop: handler registry, polling, failure isolation."""

from __future__ import annotations

import logging
from pathlib import Path

import umbral_pre

from consensus.crypto import compute_public_key, compute_seed_from_label
from ledger.tx import TxKind
from node.client import ClientError, NodeClient
from node.proxy_service import ProxyContext, process_poll_round, run_proxy_service


class _Counting:
    name = "counting"

    def __init__(self) -> None:
        self.polls = 0

    def process_poll(self, ctx: ProxyContext) -> int:
        self.polls += 1
        return 2


class _Broken:
    name = "broken"

    def process_poll(self, ctx: ProxyContext) -> int:
        raise RuntimeError("handler bug")


class _Unreachable:
    name = "unreachable"

    def process_poll(self, ctx: ProxyContext) -> int:
        raise ClientError("unreachable", "node down")


def _ctx(tmp_path: Path) -> ProxyContext:
    seed = compute_seed_from_label("proxy-0")
    return ProxyContext(
        client=NodeClient("http://127.0.0.1:1"),
        seed=seed,
        public_key=compute_public_key(seed),
        umbral_secret=umbral_pre.SecretKey.random(),
        data_dir=tmp_path / "proxy",
        chain_id="dmchain-test",
        log=logging.getLogger("test.proxy"),
    )


def test_failing_handlers_do_not_stop_the_others(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    counting = _Counting()
    assert process_poll_round(ctx, [_Broken(), _Unreachable(), counting]) == 2
    assert counting.polls == 1


def test_service_polls_factories_and_stops(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    made: list[_Counting] = []

    def factory(c: ProxyContext) -> _Counting:
        made.append(_Counting())
        return made[-1]

    def broken_factory(c: ProxyContext) -> _Counting:
        raise ValueError("cannot start")

    total = run_proxy_service(ctx, [broken_factory, factory], poll_s=0.01, max_polls=3)
    assert total == 6 and made[0].polls == 3
    assert ctx.data_dir.is_dir()


def test_submit_reports_unreachable_node(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    try:
        ctx.submit(TxKind.TRANSFER, [bytes(32), 1])
    except ClientError as exc:
        assert exc.code == "unreachable"
    else:
        raise AssertionError("submit to an unreachable node must raise")
