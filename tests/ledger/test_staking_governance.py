"""Staking, evidence slashing, governance, KYC and the audit due process."""

from __future__ import annotations

from typing import Any

from ledger_helpers import GOV, USERS, VALIDATORS, Chain, Key, make_genesis

from consensus.evidence import Evidence
from consensus.votes import VoteKind, compute_vote
from ledger import queries as q
from ledger.errors import ReceiptCode
from ledger.genesis import TOKEN
from ledger.rules import compute_governance_message
from ledger.tx import TxKind

OPERATOR = USERS[0]  # operates VALIDATORS[0]
AUDITOR = USERS[4]
SUBJECT = USERS[5]


def _evidence(key: Key, chain_id: str, position: int = 7) -> Any:
    a = compute_vote(key.seed, key.pub, chain_id, VoteKind.PBFT_COMMIT, 1, position, b"\x01" * 32)
    b = compute_vote(key.seed, key.pub, chain_id, VoteKind.PBFT_COMMIT, 1, position, b"\x02" * 32)
    return Evidence.from_votes(a, b).to_wire()


def _gov(chain: Chain, action: str, args: list[Any], signers: list[Key]) -> Any:
    seq = chain.state.get(b"mgovernance").seq
    msg = compute_governance_message(chain.state.chain_id, action, args, seq)
    sigs = [[k.pub, k.sign(msg)] for k in signers]
    fee = chain.state.get_params().min_fee
    return chain.run1(USERS[3], TxKind.GOVERNANCE, [action, args, seq, sigs], fee=fee)


def test_bond_unbond_matures_after_the_period() -> None:
    chain = Chain(genesis=make_genesis({"unbonding_period": 3}))
    v = VALIDATORS[0].pub
    start = q.get_account(chain.state, OPERATOR.pub).balance
    assert chain.run1(OPERATOR, TxKind.BOND, [v, 5 * TOKEN, []]).ok
    assert q.get_stake(chain.state, v) == 1_005 * TOKEN
    r = chain.run1(OPERATOR, TxKind.UNBOND, [v, 105 * TOKEN])
    assert r.ok and r.height == 2
    assert q.get_supply(chain.state).unbonding == 105 * TOKEN
    assert q.get_stake(chain.state, v) == 900 * TOKEN
    assert chain.run1(USERS[1], TxKind.UNBOND, [v, 1]).code == ReceiptCode.UNAUTHORIZED  # h3
    chain.run([])  # height 4
    assert q.get_account(chain.state, OPERATOR.pub).balance == start - 5 * TOKEN
    chain.run([])  # height 5: matures
    assert q.get_account(chain.state, OPERATOR.pub).balance == start + 100 * TOKEN
    assert q.get_supply(chain.state).unbonding == 0


def test_new_validator_by_bond_and_validator_set() -> None:
    chain = Chain()
    newkey = Key("val-new").pub
    assert chain.run1(USERS[2], TxKind.BOND, [newkey, TOKEN, []]).code == ReceiptCode.BAD_PARAMETER
    assert chain.run1(USERS[2], TxKind.BOND, [newkey, TOKEN, ["pos"]]).ok
    vset = {v.public_key: v for v in q.get_validator_set(chain.state)}
    assert vset[newkey].stake == TOKEN and vset[newkey].roles == ("pos",)
    assert len(vset) == 3


def test_double_sign_evidence_slashes_5_percent_jails_and_bans() -> None:
    chain = Chain()
    offender = VALIDATORS[1]
    block = chain.make_block(
        [chain.tx(USERS[3], TxKind.SUBMIT_EVIDENCE, [_evidence(offender, chain.state.chain_id)])]
    )
    from ledger.apply import apply_block

    new, receipts = apply_block(chain.state, block)
    assert receipts[0].ok, receipts[0].reason
    assert new.changed_validators == {offender.pub}
    chain.ledger.commit(new, block, receipts)
    val = q.get_validator(chain.state, offender.pub)
    assert val is not None and val.stake == 950 * TOKEN and val.jailed and val.tombstoned
    assert q.get_supply(chain.state).burned == 50 * TOKEN
    assert offender.pub not in {v.public_key for v in q.get_validator_set(chain.state)}
    again = chain.run1(
        USERS[3], TxKind.SUBMIT_EVIDENCE, [_evidence(offender, chain.state.chain_id)]
    )
    assert again.code == ReceiptCode.INVALID_STATE
    other = chain.run1(USERS[3], TxKind.SUBMIT_EVIDENCE, [_evidence(offender, "wrong-chain")])
    assert other.code == ReceiptCode.BAD_EVIDENCE
    assert chain.run1(USERS[1], TxKind.UNJAIL, [offender.pub]).code == ReceiptCode.INVALID_STATE
    assert chain.run1(USERS[3], TxKind.SUBMIT_EVIDENCE, [[1, 2]]).code == ReceiptCode.BAD_EVIDENCE


def test_governance_needs_k_of_n_and_fresh_sequence() -> None:
    chain = Chain()
    r = _gov(chain, "set_param", ["min_fee", 10], [GOV[0]])
    assert r.code == ReceiptCode.BAD_SIGNATURES
    r = _gov(chain, "set_param", ["min_fee", 10], [GOV[0], GOV[0], USERS[0]])
    assert r.code == ReceiptCode.BAD_SIGNATURES  # duplicates and outsiders do not count
    assert _gov(chain, "set_param", ["min_fee", 10], GOV[:2]).ok
    assert chain.state.get_params().min_fee == 10
    low = chain.run1(USERS[1], TxKind.TRANSFER, [USERS[2].pub, 1], fee=5)
    assert low.code == ReceiptCode.FEE_TOO_LOW
    assert (
        _gov(chain, "set_param", ["rho_ppm", 2_000_000], GOV[:2]).code == ReceiptCode.BAD_PARAMETER
    )
    assert _gov(chain, "set_param", ["escrow_policy", 1], GOV[:2]).code == ReceiptCode.BAD_PARAMETER
    assert _gov(chain, "nonsense", [], GOV[:2]).code == ReceiptCode.BAD_PARAMETER
    assert _gov(chain, "slash_downtime", [VALIDATORS[0].pub], GOV[1:]).ok
    val = q.get_validator(chain.state, VALIDATORS[0].pub)
    assert val is not None and val.stake == 990 * TOKEN and val.jailed and not val.tombstoned
    assert chain.run1(OPERATOR, TxKind.UNJAIL, [VALIDATORS[0].pub], fee=10).ok


def test_audit_due_process() -> None:
    chain = Chain(genesis=make_genesis({"audit_timelock": 2, "audit_expiry": 6}))
    kyc = [SUBJECT.pub, b"\x09" * 32, b"capsule"]
    assert chain.run1(USERS[1], TxKind.KYC_REGISTER, kyc).code == ReceiptCode.UNAUTHORIZED
    assert chain.run1(GOV[0], TxKind.KYC_REGISTER, kyc).ok
    req = [SUBJECT.pub, b"\x07" * 32, ["name", "id_number"], "court order 42"]
    assert chain.run1(AUDITOR, TxKind.AUDIT_REQUEST, req).code == ReceiptCode.UNAUTHORIZED
    assert _gov(chain, "register_auditor", [AUDITOR.pub], GOV[:2]).ok
    assert q.is_auditor(chain.state, AUDITOR.pub)
    opened = chain.run1(AUDITOR, TxKind.AUDIT_REQUEST, req)
    assert opened.ok
    rid = opened.result
    h0 = opened.height
    ok, reason = q.is_audit_releasable(chain.state, rid, h0 + 3)
    assert not ok and "approvals" in reason
    assert chain.run1(GOV[0], TxKind.AUDIT_APPROVE, [rid]).ok
    assert chain.run1(GOV[0], TxKind.AUDIT_APPROVE, [rid]).code == ReceiptCode.INVALID_STATE
    assert chain.run1(USERS[1], TxKind.AUDIT_APPROVE, [rid]).code == ReceiptCode.UNAUTHORIZED
    assert chain.run1(GOV[1], TxKind.AUDIT_APPROVE, [rid]).ok
    state = chain.state
    assert q.is_audit_releasable(state, rid, h0 + 1)[0] is False  # time lock
    assert q.is_audit_releasable(state, rid, h0 + 2) == (True, "releasable")
    assert q.is_audit_releasable(state, rid, h0 + 2, ["name"])[0]
    assert not q.is_audit_releasable(state, rid, h0 + 2, ["address"])[0]
    assert not q.is_audit_releasable(state, rid, h0 + 6)[0]  # expired
    release = chain.run1(AUDITOR, TxKind.AUDIT_RELEASE, [rid])
    assert release.ok, release.reason
    assert chain.run1(USERS[1], TxKind.AUDIT_RELEASE, [rid]).code == ReceiptCode.UNAUTHORIZED
    # an objection inside the time lock blocks a second request for good
    second = chain.run1(AUDITOR, TxKind.AUDIT_REQUEST, req).result
    assert chain.run1(GOV[2], TxKind.AUDIT_OBJECT, [second, "no due cause"]).ok
    for g in GOV[:2]:
        assert chain.run1(g, TxKind.AUDIT_APPROVE, [second]).ok
    assert chain.run1(AUDITOR, TxKind.AUDIT_RELEASE, [second]).code == ReceiptCode.UNAUTHORIZED
    late = chain.run1(GOV[0], TxKind.AUDIT_OBJECT, [second, "late"])
    assert late.code == ReceiptCode.INVALID_STATE
    kinds = [e.kind for _, e in q.get_audit_log_by_subject(chain.state, SUBJECT.pub)]
    assert kinds == [
        "kyc_register",
        "audit_request",
        "audit_approve",
        "audit_approve",
        "audit_release",
        "audit_request",
        "audit_object",
        "audit_approve",
        "audit_approve",
    ]
    log = q.get_audit_log(chain.state, 0, 100)
    assert [seq for seq, _ in log] == list(range(len(log)))
    assert log[1][1].kind == "register_auditor" and log[1][1].subject == AUDITOR.pub
    assert q.get_audit_log(chain.state, 2, 4) == log[2:4]
    assert _gov(chain, "remove_auditor", [AUDITOR.pub], GOV[:2]).ok
    assert not q.is_auditor(chain.state, AUDITOR.pub)


def test_validator_updates_report_jail_as_zero_power() -> None:
    chain = Chain()
    from ledger.apply import apply_block

    offender = VALIDATORS[1]
    ev = _evidence(offender, chain.state.chain_id)
    bond = chain.tx(OPERATOR, TxKind.BOND, [VALIDATORS[0].pub, TOKEN, []])
    block = chain.make_block([bond, chain.tx(USERS[3], TxKind.SUBMIT_EVIDENCE, [ev])])
    new, receipts = apply_block(chain.state, block)
    assert all(r.ok for r in receipts)
    updates = {u.public_key: u for u in q.get_validator_updates(new)}
    assert updates[VALIDATORS[0].pub].stake == 1_001 * TOKEN
    assert updates[offender.pub].stake == 0
    chain.nonces = {}  # the block above was not committed
    assert _gov(chain, "set_param", ["epoch_length", 5], GOV[:2]).code == ReceiptCode.BAD_PARAMETER


def test_unbonding_stake_is_slashed_with_the_bond() -> None:
    chain = Chain(genesis=make_genesis({"unbonding_period": 5}))
    offender = VALIDATORS[0]
    start = q.get_account(chain.state, OPERATOR.pub).balance
    assert chain.run1(OPERATOR, TxKind.UNBOND, [offender.pub, 200 * TOKEN]).ok  # matures at 6
    ev = _evidence(offender, chain.state.chain_id)
    assert chain.run1(USERS[3], TxKind.SUBMIT_EVIDENCE, [ev]).ok
    supply = q.get_supply(chain.state)
    assert supply.burned == 40 * TOKEN + 10 * TOKEN  # 5 % of 800 bonded + 5 % of 200 unbonding
    assert supply.unbonding == 190 * TOKEN
    for _ in range(4):
        chain.run([])
    assert chain.state.height == 6
    assert q.get_account(chain.state, OPERATOR.pub).balance - start == 190 * TOKEN
    val = q.get_validator(chain.state, offender.pub)
    assert val is not None and val.unbonding_heights == [] and val.stake == 760 * TOKEN
