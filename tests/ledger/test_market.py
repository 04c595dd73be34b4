"""Data-market rules, including the paper's Table 2 figures."""

from __future__ import annotations

from ledger_helpers import ORACLE, USERS, Chain, make_genesis

from ledger import queries as q
from ledger.errors import ReceiptCode
from ledger.genesis import TOKEN
from ledger.records import ACCESS_DISPUTED, ACCESS_FAILED, ACCESS_GRANTED
from ledger.rules import RuleContext, compute_access_price, compute_quality_message
from ledger.tx import TxKind

PROVIDER, CONSUMER, OTHER = USERS[2], USERS[3], USERS[4]
H32 = bytes(range(32))


def _verifier_accepting(proof: bytes, commitment: bytes, content_hash: bytes) -> str | None:
    return None if proof == b"bad-delivery:" + commitment else "proof does not match"


def _register(chain: Chain, size_bytes: int = 1_000_000, stake: int = 100 * TOKEN) -> bytes:
    r = chain.run1(
        PROVIDER,
        TxKind.REGISTER_ASSET,
        [H32, H32, size_bytes, H32, ["images"], "CC-BY-4.0", stake, b"commit-1"],
    )
    assert r.ok, r.reason
    return r.result


def _set_quality(chain: Chain, asset_id: bytes, q_ppm: int, seq: int, signers: int = 2) -> int:
    msg = compute_quality_message(chain.state.chain_id, asset_id, q_ppm, seq)
    sigs = [[o.pub, o.sign(msg)] for o in ORACLE[:signers]]
    return chain.run1(OTHER, TxKind.UPDATE_QUALITY, [asset_id, q_ppm, seq, sigs]).code


def test_table2_payment_is_45_tokens_and_dispute_slashes_50() -> None:
    chain = Chain(ctx=RuleContext(dispute_verifier=_verifier_accepting))
    params = chain.state.get_params()
    assert params.alpha_per_kb * 20 == TOKEN  # alpha = 0.05 token/KB
    asset_id = _register(chain)  # V = 1,000 KB, s = 100 tokens
    assert _set_quality(chain, asset_id, 900_000, 1) == ReceiptCode.OK  # q = 0.90
    provider_before = q.get_account(chain.state, PROVIDER.pub).balance
    consumer_before = q.get_account(chain.state, CONSUMER.pub).balance

    req = chain.run1(CONSUMER, TxKind.REQUEST_ACCESS, [asset_id])
    assert req.ok, req.reason
    access = q.get_access(chain.state, req.result)
    assert access is not None and access.escrow == 45 * TOKEN
    assert q.get_supply(chain.state).escrow == 45 * TOKEN
    settle = chain.run1(CONSUMER, TxKind.SETTLE_ACCESS, [req.result])
    assert settle.ok, settle.reason
    assert q.get_account(chain.state, PROVIDER.pub).balance - provider_before == 45 * TOKEN
    assert consumer_before - q.get_account(chain.state, CONSUMER.pub).balance == 45 * TOKEN
    grant = q.get_access(chain.state, req.result)
    assert grant is not None and grant.status == ACCESS_GRANTED

    bad = chain.run1(CONSUMER, TxKind.DISPUTE, [req.result, b"not a proof"])
    assert bad.code == ReceiptCode.BAD_PROOF
    burned_before = q.get_supply(chain.state).burned
    ok = chain.run1(CONSUMER, TxKind.DISPUTE, [req.result, b"bad-delivery:commit-1"])
    assert ok.ok, ok.reason
    asset = q.get_asset(chain.state, asset_id)
    assert asset is not None and asset.stake == 50 * TOKEN and not asset.active
    assert q.get_supply(chain.state).burned - burned_before == 50 * TOKEN
    grant = q.get_access(chain.state, req.result)
    assert grant is not None and grant.status == ACCESS_DISPUTED
    again = chain.run1(CONSUMER, TxKind.DISPUTE, [req.result, b"bad-delivery:commit-1"])
    assert again.code == ReceiptCode.INVALID_STATE


def test_price_formula_and_beta_floor() -> None:
    assert compute_access_price(50_000, 900_000, 1_000_000) == 45 * TOKEN
    chain = Chain()
    asset_id = _register(chain, size_bytes=1_000)  # 1 KB at q=0.5: price 0.025 token
    req = chain.run1(CONSUMER, TxKind.REQUEST_ACCESS, [asset_id])
    access = q.get_access(chain.state, req.result)
    assert access is not None
    assert access.price == 25_000 and access.escrow == TOKEN  # beta floor
    burned = q.get_supply(chain.state).burned
    # the provider cannot claim payment without delivery; the consumer acknowledges
    claim = chain.run1(PROVIDER, TxKind.SETTLE_ACCESS, [req.result])
    assert claim.code == ReceiptCode.UNAUTHORIZED
    assert chain.run1(CONSUMER, TxKind.SETTLE_ACCESS, [req.result]).ok
    assert q.get_supply(chain.state).burned - burned == TOKEN - 25_000


def test_recycle_policy_sends_remainder_to_fee_pool() -> None:
    chain = Chain(genesis=make_genesis({"escrow_policy": "recycle"}))
    asset_id = _register(chain, size_bytes=1_000)
    req = chain.run1(CONSUMER, TxKind.REQUEST_ACCESS, [asset_id])
    assert chain.run1(CONSUMER, TxKind.SETTLE_ACCESS, [req.result]).ok
    supply = q.get_supply(chain.state)
    assert supply.fee_pool == TOKEN - 25_000 and supply.burned == 0


def test_fail_access_refunds_and_respects_deadline() -> None:
    chain = Chain(genesis=make_genesis({"access_timeout": 2}))
    asset_id = _register(chain)
    before = q.get_account(chain.state, CONSUMER.pub).balance
    req = chain.run1(CONSUMER, TxKind.REQUEST_ACCESS, [asset_id])
    early = chain.run1(CONSUMER, TxKind.FAIL_ACCESS, [req.result])
    assert early.code == ReceiptCode.INVALID_STATE
    assert chain.run1(OTHER, TxKind.FAIL_ACCESS, [req.result]).code == ReceiptCode.UNAUTHORIZED
    late = chain.run1(CONSUMER, TxKind.FAIL_ACCESS, [req.result])
    assert late.ok, late.reason
    assert q.get_account(chain.state, CONSUMER.pub).balance == before
    access = q.get_access(chain.state, req.result)
    assert access is not None and access.status == ACCESS_FAILED
    assert q.get_supply(chain.state).escrow == 0
    assert (
        chain.run1(PROVIDER, TxKind.SETTLE_ACCESS, [req.result]).code == ReceiptCode.INVALID_STATE
    )


def test_quality_update_needs_oracle_quorum_and_fresh_round() -> None:
    chain = Chain()
    asset_id = _register(chain)
    assert _set_quality(chain, asset_id, 700_000, 1, signers=1) == ReceiptCode.BAD_SIGNATURES
    assert _set_quality(chain, asset_id, 700_000, 1) == ReceiptCode.OK
    assert _set_quality(chain, asset_id, 800_000, 1) == ReceiptCode.INVALID_STATE
    assert _set_quality(chain, asset_id, 0, 2) == ReceiptCode.BAD_PARAMETER
    asset = q.get_asset(chain.state, asset_id)
    assert asset is not None and asset.quality_ppm == 700_000


def test_asset_stake_below_minimum_is_refused_without_side_effects() -> None:
    chain = Chain()
    before = q.get_account(chain.state, PROVIDER.pub)
    r = chain.run1(PROVIDER, TxKind.REGISTER_ASSET, [H32, H32, 10, H32, [], "", 99 * TOKEN, b""])
    assert r.code == ReceiptCode.BAD_PARAMETER and "minimum" in r.reason
    after = q.get_account(chain.state, PROVIDER.pub)
    assert after.balance == before.balance and after.nonce == before.nonce + 1
    assert q.get_asset(chain.state, r.tx_hash) is None


def test_provider_cannot_buy_own_asset_and_unknown_asset_fails() -> None:
    chain = Chain()
    asset_id = _register(chain)
    assert chain.run1(PROVIDER, TxKind.REQUEST_ACCESS, [asset_id]).code == ReceiptCode.BAD_PARAMETER
    assert chain.run1(CONSUMER, TxKind.REQUEST_ACCESS, [bytes(32)]).code == ReceiptCode.NOT_FOUND


def test_retire_asset_waits_for_pending_requests_and_dispute_window() -> None:
    chain = Chain(genesis=make_genesis({"unbonding_period": 3}))
    asset_id = _register(chain)  # height 1
    start = q.get_account(chain.state, PROVIDER.pub).balance
    req = chain.run1(CONSUMER, TxKind.REQUEST_ACCESS, [asset_id])  # height 2
    r = chain.run1(PROVIDER, TxKind.RETIRE_ASSET, [asset_id])
    assert r.code == ReceiptCode.INVALID_STATE and "pending" in r.reason
    assert chain.run1(CONSUMER, TxKind.SETTLE_ACCESS, [req.result]).ok  # height 4
    assert chain.run1(CONSUMER, TxKind.RETIRE_ASSET, [asset_id]).code == ReceiptCode.UNAUTHORIZED
    early = chain.run1(PROVIDER, TxKind.RETIRE_ASSET, [asset_id])  # height 6 < 4 + 3
    assert early.code == ReceiptCode.INVALID_STATE and "locked until height 7" in early.reason
    assert chain.run1(PROVIDER, TxKind.RETIRE_ASSET, [asset_id]).ok  # height 7
    balance = q.get_account(chain.state, PROVIDER.pub).balance
    assert balance - start == 125 * TOKEN  # stake back, plus 1,000 KB at q=0.5: 25 tokens
    asset = q.get_asset(chain.state, asset_id)
    assert asset is not None and asset.stake == 0 and not asset.active
    assert q.get_supply(chain.state).asset_stakes == 0
    again = chain.run1(PROVIDER, TxKind.RETIRE_ASSET, [asset_id])
    assert again.code == ReceiptCode.INVALID_STATE
