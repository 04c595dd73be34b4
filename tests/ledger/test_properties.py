"""Property tests over random transaction sequences (hypothesis)."""

from __future__ import annotations

import tempfile
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ledger_helpers import CHAIN, USERS, VALIDATORS, Chain, make_genesis, sign_tx

from consensus.evidence import Evidence
from consensus.votes import VoteKind, compute_vote
from ledger import schema
from ledger.apply import apply_block
from ledger.chain import Ledger
from ledger.errors import ReceiptCode
from ledger.genesis import TOKEN
from ledger.records import ACCESS_PENDING
from ledger.rules import RuleContext
from ledger.store import LevelDBStore, MemoryStore
from ledger.tx import TxKind

H32 = bytes(32)
KINDS = ["transfer", "bond", "unbond", "asset", "request", "request", "request"]
KINDS += ["settle", "settle", "fail", "fail", "dispute", "dispute", "retire", "evidence"]

op = st.tuples(
    st.sampled_from(KINDS),
    st.integers(0, len(USERS) - 1),  # sender
    st.integers(0, len(USERS) - 1),  # counterparty / pick
    st.integers(0, 2_000 * TOKEN),  # amount (may exceed balances)
    st.sampled_from([0, 0, 0, 0, 0, 0, -1, 1]),  # nonce offset: replay / skip
    st.sampled_from([0, 0, 0, 1_000]),  # fee
)
blocks_strategy = st.lists(st.lists(op, max_size=8), min_size=1, max_size=10)


def _verifier(proof: bytes, commitment: bytes, content_hash: bytes) -> str | None:
    return None if proof == b"valid" else "invalid proof"


def _payload(
    chain: Chain, kind: str, sender: int, pick: int, amount: int
) -> tuple[TxKind, list[Any], int]:
    """Return (kind, payload, sender index); market follow-ups use a party of the request."""
    state = chain.state
    if kind == "transfer":
        return TxKind.TRANSFER, [USERS[pick].pub, amount], sender
    if kind == "bond":
        # users 0 and 1 operate the two genesis validators
        return TxKind.BOND, [VALIDATORS[pick % 2].pub, amount // 8, []], pick % 2
    if kind == "unbond":
        return TxKind.UNBOND, [VALIDATORS[pick % 2].pub, amount // 4], pick % 2
    if kind == "evidence":
        offender = VALIDATORS[pick % 2]
        votes = [
            compute_vote(offender.seed, offender.pub, CHAIN, VoteKind.PBFT_COMMIT, 0, amount, d)
            for d in (b"\x01" * 32, b"\x02" * 32)
        ]
        return TxKind.SUBMIT_EVIDENCE, [Evidence.from_votes(*votes).to_wire()], sender
    if kind == "asset":
        stake = 100 * TOKEN + amount // 100
        payload = [H32, H32, 1 + amount // 1_000, H32, [], "", stake, b"c"]
        return TxKind.REGISTER_ASSET, payload, sender
    assets = [k[1:] for k, _ in state.iterate(schema.ASSET)]
    requests = [(k[1:], v) for k, v in state.iterate(schema.ACCESS)]
    if kind == "request":
        target = assets[pick % len(assets)] if assets else H32
        return TxKind.REQUEST_ACCESS, [target], sender
    if kind == "retire":
        if not assets:
            return TxKind.RETIRE_ASSET, [H32], sender
        target = assets[pick % len(assets)]
        owner = state.get(schema.asset_key(target)).provider
        return TxKind.RETIRE_ASSET, [target], [u.pub for u in USERS].index(owner)
    if not requests:
        return TxKind.SETTLE_ACCESS, [H32], sender
    target, request = requests[pick % len(requests)]
    parties = {key.pub: i for i, key in enumerate(USERS)}
    party = parties[request.consumer if amount % 3 else request.provider]
    if kind == "settle":
        return TxKind.SETTLE_ACCESS, [target], party
    if kind == "fail":
        return TxKind.FAIL_ACCESS, [target], party
    proof = b"valid" if amount % 2 else b"nope"
    return TxKind.DISPUTE, [target, proof], parties[request.consumer]


def _check_invariants(chain: Chain, genesis_supply: int) -> None:
    state = chain.state
    supply = state.get_supply()
    assert sum(supply) == genesis_supply
    assert all(v >= 0 for v in supply)
    balances = [a.balance for _, a in state.iterate(schema.ACCOUNT)]
    assert all(b >= 0 for b in balances)
    assert sum(balances) == supply.balances
    assert sum(v.stake for _, v in state.iterate(schema.VALIDATOR)) == supply.validator_stakes
    assert sum(a.stake for _, a in state.iterate(schema.ASSET)) == supply.asset_stakes
    pending = [r.escrow for _, r in state.iterate(schema.ACCESS) if r.status == ACCESS_PENDING]
    assert sum(pending) == supply.escrow
    for key, asset in state.iterate(schema.ASSET):
        open_requests = [
            r
            for _, r in state.iterate(schema.ACCESS)
            if r.asset_id == key[1:] and r.status == ACCESS_PENDING
        ]
        assert asset.pending == len(open_requests)
    unbonding = [e[2] for _, entries in state.iterate(schema.UNBONDING) for e in entries]
    assert sum(unbonding) == supply.unbonding
    for key, val in state.iterate(schema.VALIDATOR):
        for height in val.unbonding_heights:
            entries = state.get(schema.unbonding_key(height)) or []
            assert any(e[1] == key[1:] for e in entries)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(blocks=blocks_strategy)
def test_random_sequences_keep_invariants_and_replay_identically(blocks: list[Any]) -> None:
    genesis = make_genesis({"unbonding_period": 2, "access_timeout": 1, "min_fee": 0})
    ctx = RuleContext(dispute_verifier=_verifier)
    chain = Chain(genesis=genesis, ctx=ctx)
    supply0 = genesis.total_supply()
    with tempfile.TemporaryDirectory() as tmp:
        disk = Ledger(LevelDBStore(tmp, sync=False), genesis)
        assert disk.state.digest == chain.state.digest
        committed = []
        for ops in blocks:
            txs = []
            expected_bad_nonce = []
            planned: dict[int, int] = {}
            for kind, chosen, pick, amount, offset, fee in ops:
                tx_kind, payload, sender = _payload(chain, kind, chosen, pick, amount)
                key = USERS[sender]
                base = planned.get(sender, chain.state.get_account(key.pub).nonce)
                nonce = base + offset
                if nonce < 0:
                    nonce, offset = base, 0
                txs.append(sign_tx(key, tx_kind, nonce, payload, fee))
                expected_bad_nonce.append(offset != 0)
                if offset == 0:
                    planned[sender] = base + 1
            block = chain.make_block(txs)
            new, receipts = apply_block(chain.state, block, ctx=ctx)
            for receipt, bad in zip(receipts, expected_bad_nonce, strict=True):
                if bad:
                    assert receipt.code == ReceiptCode.BAD_NONCE
                else:
                    # a fee the sender cannot afford is the only other outright rejection
                    assert receipt.code != ReceiptCode.BAD_NONCE
            chain.ledger.commit(new, block, receipts)
            disk_new, disk_receipts = apply_block(disk.state, block, ctx=ctx)
            disk.commit(disk_new, block, disk_receipts)
            assert disk_new.digest == new.digest
            assert disk_receipts == receipts
            for receipt, tx in zip(receipts, txs, strict=True):
                event(f"{tx.kind.name}: {ReceiptCode(receipt.code).name}")
            committed.append(block)
            _check_invariants(chain, supply0)
        disk.store.close()
    replay = Ledger(MemoryStore(), genesis)
    for block in committed:
        new, _ = apply_block(replay.state, block, ctx=ctx)
        replay.commit(new, block, _)
    assert replay.state.digest == chain.state.digest
    assert replay.state.height == len(blocks)


def test_replayed_transaction_in_later_block_is_rejected_and_changes_nothing() -> None:
    chain = Chain()
    tx = sign_tx(USERS[0], TxKind.TRANSFER, 0, [USERS[1].pub, 7])
    assert chain.run([tx])[0].ok
    before = chain.state.get_account(USERS[0].pub)
    receipt = chain.run([tx])[0]
    assert receipt.code == ReceiptCode.BAD_NONCE
    assert chain.state.get_account(USERS[0].pub) == before
    stored = chain.ledger.get_receipt(tx.tx_hash)
    assert stored is not None and stored.ok and stored.height == 1
    skipped = sign_tx(USERS[0], TxKind.TRANSFER, 5, [USERS[1].pub, 7])
    assert chain.run([skipped])[0].code == ReceiptCode.BAD_NONCE
    assert chain.state.chain_id == CHAIN
