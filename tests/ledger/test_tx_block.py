"""Transactions, Merkle proofs, blocks and whole-block validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_helpers import CHAIN, USERS, Chain, sign_tx

from ledger import tx as t
from ledger.apply import apply_block
from ledger.block import Header, compute_block, decode_block
from ledger.errors import BlockError, ReceiptCode, TxError
from ledger.merkle import compute_inclusion_proof, compute_merkle_root, is_valid_inclusion_proof
from ledger.tx import TxKind, compute_signed_tx, decode_tx, get_tx_error

SEED = USERS[0].seed
U128 = (1 << 128) - 1


def _fields(tx: t.Tx) -> tuple[object, ...]:
    return (tx.chain_id, tx.kind, tx.sender, tx.nonce, tx.fee, tuple(tx.args), tx.signature)


@settings(max_examples=200, deadline=None)
@given(
    chain_id=st.text(max_size=70),
    nonce=st.integers(0, U128),
    fee=st.integers(0, U128),
    amount=st.integers(0, U128),
    to=st.binary(min_size=32, max_size=32),
)
def test_transfer_fast_path_matches_generic_codec(
    chain_id: str, nonce: int, fee: int, amount: int, to: bytes
) -> None:
    raw = compute_signed_tx(SEED, chain_id, TxKind.TRANSFER, nonce, [to, amount], fee=fee)
    if len(chain_id) > t.MAX_CHAIN_ID_LEN:
        with pytest.raises(TxError):
            decode_tx(raw)
        return
    fast = decode_tx(raw)
    generic = t._decode_tx_generic(raw, raw[:-64])
    assert _fields(fast) == _fields(generic)
    assert (fast.nonce, fast.fee, fast.args.amount, fast.args.to) == (nonce, fee, amount, to)
    assert get_tx_error(fast, chain_id) is None


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, 200), value=st.integers(0, 255))
def test_mutated_transfer_bytes_decode_alike_on_both_paths(position: int, value: int) -> None:
    raw = bytearray(compute_signed_tx(SEED, CHAIN, TxKind.TRANSFER, 5, [USERS[1].pub, 300]))
    raw[position % len(raw)] = value
    data = bytes(raw)
    try:
        generic: t.Tx | None = t._decode_tx_generic(data, data[:-64])
    except TxError:
        generic = None
    try:
        fast: t.Tx | None = decode_tx(data)
    except TxError:
        fast = None
    assert (fast is None) == (generic is None)
    if fast is not None and generic is not None:
        assert _fields(fast) == _fields(generic)


def test_stateless_checks_reject_bad_transactions() -> None:
    raw = compute_signed_tx(SEED, CHAIN, TxKind.TRANSFER, 0, [USERS[1].pub, 1])
    assert get_tx_error(raw, CHAIN) is None
    assert "chain" in (get_tx_error(raw, "other-chain") or "")
    forged = raw[:-1] + bytes([raw[-1] ^ 1])
    assert get_tx_error(forged, CHAIN) == "bad signature"
    assert get_tx_error(b"\x00" * 10, CHAIN) is not None
    big = compute_signed_tx(SEED, CHAIN, TxKind.DISPUTE, 0, [bytes(32), b"x" * t.MAX_PROOF_SIZE])
    assert get_tx_error(big, CHAIN) is None
    with pytest.raises(TxError, match="at most"):
        decode_tx(compute_signed_tx(SEED, CHAIN, TxKind.DISPUTE, 0, [bytes(32), b"x" * 70_000]))
    with pytest.raises(TxError, match="limit"):
        decode_tx(b"\x00" * (t.MAX_TX_SIZE + 1))
    with pytest.raises(TxError, match="32 bytes"):
        decode_tx(compute_signed_tx(SEED, CHAIN, TxKind.TRANSFER, 0, [b"short", 1]))
    with pytest.raises(TxError, match="integer"):
        decode_tx(compute_signed_tx(SEED, CHAIN, TxKind.TRANSFER, 0, [bytes(32), -1]))
    with pytest.raises(TxError, match="unknown transaction kind"):
        body = t.codec.encode([t.TX_DOMAIN, CHAIN, 99, USERS[0].pub, 0, 0, []])
        decode_tx(body + bytes(64))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17])
def test_merkle_inclusion_proofs(count: int) -> None:
    hashes = [bytes([i]) * 32 for i in range(count)]
    root = compute_merkle_root(hashes)
    for index, h in enumerate(hashes):
        proof = compute_inclusion_proof(hashes, index)
        assert is_valid_inclusion_proof(h, proof, root)
        assert not is_valid_inclusion_proof(b"\xff" * 32, proof, root)
        if proof:
            flipped = [(not proof[0][0], proof[0][1]), *proof[1:]]
            assert not is_valid_inclusion_proof(h, flipped, root)
    assert compute_merkle_root(hashes[:-1]) != root
    assert compute_merkle_root([*hashes, hashes[-1]]) != root


def test_block_round_trip_and_hash() -> None:
    txs = [sign_tx(USERS[0], TxKind.TRANSFER, i, [USERS[1].pub, 1]) for i in range(3)]
    block = compute_block(CHAIN, 1, bytes(32), bytes(32), 0, txs, proposer=USERS[0].pub)
    decoded = decode_block(block.encode())
    assert decoded.header == block.header
    assert decoded.block_hash() == block.block_hash()
    assert [x.tx_hash for x in decoded.txs] == [x.tx_hash for x in txs]
    assert Header.from_wire(block.header.to_wire()) == block.header
    other = compute_block(CHAIN, 1, bytes(32), bytes(32), 0, txs, timestamp_ms=5)
    assert other.block_hash() != block.block_hash()
    with pytest.raises(BlockError):
        decode_block(b"garbage")


def test_invalid_blocks_are_refused_whole() -> None:
    chain = Chain()
    state = chain.state
    txs = [chain.tx(USERS[0], TxKind.TRANSFER, [USERS[1].pub, 1])]
    good = chain.make_block(txs)
    h = good.header
    bad_blocks = [
        compute_block(CHAIN, 2, h.parent_hash, h.state_digest, 0, txs),
        compute_block(CHAIN, 1, bytes(32), h.state_digest, 0, txs),
        compute_block(CHAIN, 1, h.parent_hash, bytes(32), 0, txs),
        compute_block(CHAIN, 1, h.parent_hash, h.state_digest, 3, txs),
        compute_block("other", 1, h.parent_hash, h.state_digest, 0, txs),
    ]
    from ledger.block import Block

    bad_blocks.append(Block(h, (*txs, txs[0])))  # root mismatch
    for block in bad_blocks:
        with pytest.raises(BlockError):
            apply_block(state, block)
    assert chain.state.height == 0
    new, receipts = apply_block(state, good)
    assert receipts[0].ok and new.height == 1 and state.height == 0


def test_failed_tx_changes_only_nonce_and_fee() -> None:
    chain = Chain()
    sender = USERS[0]
    before = chain.state.get_account(sender.pub)
    supply_before = chain.state.get_supply()
    r = chain.run1(sender, TxKind.TRANSFER, [USERS[1].pub, 10**15], fee=1_000)
    assert r.code == ReceiptCode.INSUFFICIENT_FUNDS and r.fee == 1_000
    after = chain.state.get_account(sender.pub)
    assert after.nonce == before.nonce + 1 and after.balance == before.balance - 1_000
    assert chain.state.get_supply().fee_pool == supply_before.fee_pool + 1_000
    assert chain.state.get_account(USERS[1].pub) == chain.state.get_account(USERS[1].pub)
    stored = chain.ledger.get_receipt(r.tx_hash)
    assert stored == r
    unaffordable = chain.run1(USERS[5], TxKind.TRANSFER, [USERS[1].pub, 1], fee=10**15)
    assert unaffordable.code == ReceiptCode.FEE_TOO_LOW
    assert chain.ledger.get_receipt(unaffordable.tx_hash) is None
    assert chain.state.get_account(USERS[5].pub).nonce == 0


def test_unverified_apply_rejects_forged_signature_but_verified_flag_skips_it() -> None:
    chain = Chain()
    raw = compute_signed_tx(SEED, CHAIN, TxKind.TRANSFER, 0, [USERS[1].pub, 1])
    forged = decode_tx(raw[:-1] + bytes([raw[-1] ^ 1]))
    block = chain.make_block([forged])
    _, receipts = apply_block(chain.state, block)
    assert receipts[0].code == ReceiptCode.BAD_TX
    _, receipts = apply_block(chain.state, block, verified=True)
    assert receipts[0].ok


def test_pipelined_blocks_commit_in_order() -> None:
    chain = Chain()
    head = chain.state
    b1 = chain.make_block([chain.tx(USERS[0], TxKind.TRANSFER, [USERS[1].pub, 3])])
    s1, r1 = apply_block(head, b1)
    tx2 = chain.tx(USERS[0], TxKind.TRANSFER, [USERS[1].pub, 4])
    b2 = compute_block(CHAIN, 2, s1.block_hash, s1.digest, 0, [tx2])
    s2, r2 = apply_block(s1, b2)  # executed before b1 is committed
    assert r1[0].ok and r2[0].ok
    chain.ledger.commit(s1, b1, r1)
    chain.ledger.commit(s2, b2, r2)
    assert chain.state.height == 2 and chain.state.digest == s2.digest
    assert chain.state.get_account(USERS[0].pub).nonce == 2


def test_default_dispute_verifier_is_pre_dispute() -> None:
    chain = Chain()  # default RuleContext: pre.dispute.get_dispute_error
    provider, consumer = USERS[2], USERS[3]
    h = bytes(32)
    asset = chain.run1(provider, TxKind.REGISTER_ASSET, [h, h, 1000, h, [], "", 100 * 10**6, b"c"])
    req = chain.run1(consumer, TxKind.REQUEST_ACCESS, [asset.result])
    assert chain.run1(consumer, TxKind.SETTLE_ACCESS, [req.result]).ok
    r = chain.run1(consumer, TxKind.DISPUTE, [req.result, b"garbage"])
    assert r.code == ReceiptCode.BAD_PROOF and "dispute proof rejected" in r.reason
    assert "verifier failed" not in r.reason


def test_block_size_is_bounded_so_every_block_encodes() -> None:
    from ledger.block import MAX_BLOCK_TX_BYTES

    proof = b"x" * t.MAX_PROOF_SIZE
    txs = [sign_tx(USERS[0], TxKind.DISPUTE, i, [bytes(32), proof]) for i in range(70)]
    assert sum(len(x.raw) for x in txs) > MAX_BLOCK_TX_BYTES
    with pytest.raises(BlockError, match="size limit"):
        compute_block(CHAIN, 1, bytes(32), bytes(32), 0, txs)
    fitting = txs[:60]
    block = compute_block(CHAIN, 1, bytes(32), bytes(32), 0, fitting)
    assert len(decode_block(block.encode()).txs) == 60
