"""Fuzz: well-shaped but arbitrary payloads of every kind never crash apply_block."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledger_helpers import GOV, USERS, VALIDATORS, Chain, sign_tx

from ledger.apply import apply_block
from ledger.errors import ReceiptCode, TxError
from ledger.tx import PAYLOAD_FIELDS, TxKind, compute_payload_args

KEYS = [u.pub for u in USERS] + [g.pub for g in GOV] + [v.pub for v in VALIDATORS]
SENDERS = USERS + GOV

b32 = st.one_of(st.sampled_from(KEYS), st.binary(min_size=32, max_size=32))
scalar = st.one_of(st.integers(-5, 2**70), st.binary(max_size=40), st.text(max_size=5))


def _field(spec: Any) -> st.SearchStrategy[Any]:
    if spec == "b32":
        return b32
    if spec == "uint":
        return st.one_of(st.integers(0, 300), st.integers(0, 2**80))
    if spec == "list":
        return st.lists(st.one_of(scalar, st.lists(scalar, max_size=3)), max_size=4)
    if spec == "sigs":
        pair = st.tuples(b32, st.binary(min_size=64, max_size=64)).map(list)
        return st.lists(pair, max_size=3)
    if spec[0] == "bytes":
        return st.binary(max_size=min(spec[1], 80))
    if spec[0] == "str":
        return st.text(max_size=min(spec[1], 12))
    return st.lists(st.sampled_from(["pos", "pbft", "name", "x"]), max_size=spec[1])


def _payload(kind: TxKind) -> st.SearchStrategy[list[Any]]:
    return st.tuples(*[_field(spec) for spec in PAYLOAD_FIELDS[kind][1]]).map(list)


tx_strategy = st.sampled_from(list(TxKind)).flatmap(
    lambda kind: st.tuples(st.just(kind), _payload(kind), st.integers(0, len(SENDERS) - 1))
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(tx_strategy, min_size=1, max_size=12))
def test_arbitrary_payloads_fail_cleanly(ops: list[Any]) -> None:
    chain = Chain()
    supply = chain.ledger.genesis.total_supply()
    txs = []
    nonces: dict[int, int] = {}
    for kind, payload, who in ops:
        try:
            compute_payload_args(kind, payload)
        except TxError:
            continue  # shape errors are decode_tx's job (tested elsewhere)
        nonce = nonces.get(who, 0)
        nonces[who] = nonce + 1
        txs.append(sign_tx(SENDERS[who], kind, nonce, payload))
    block = chain.make_block(txs)
    new, receipts = apply_block(chain.state, block)
    assert len(receipts) == len(txs)
    for receipt in receipts:
        assert receipt.code in set(ReceiptCode)
        assert receipt.ok or receipt.reason
    chain.ledger.commit(new, block, receipts)
    assert sum(chain.state.get_supply()) == supply
