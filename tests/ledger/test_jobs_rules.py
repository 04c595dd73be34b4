"""Training-job rules: refusals before locking, t-of-k agreement, slashing, settlement."""

from __future__ import annotations

import json
from typing import Any

from ledger_helpers import GOV, USERS, Chain, Key, make_genesis

from consensus import codec
from ledger import queries as q
from ledger.errors import ReceiptCode
from ledger.genesis import TOKEN
from ledger.records import JOB_ACCEPTED, JOB_EXPIRED, JOB_OPEN
from ledger.rules_jobs import compute_assignment_order
from ledger.tx import TxKind
from ml.quality import compute_quality
from ml.settlement import compute_eligible, compute_settlement
from ml.spec import compute_spec_json, encode_spec, parse_spec_json

PROVIDERS = [USERS[0], USERS[1]]
BUYER, OTHER_BUYER = USERS[2], USERS[3]
EXECUTORS = [Key(f"executor-{i}") for i in range(5)]
H1, H2 = bytes([1] * 32), bytes([2] * 32)
BID = 100 * TOKEN
FEE = 10 * TOKEN
DIGEST, LIE = bytes([7] * 32), bytes([9] * 32)
WEIGHTS = bytes([8] * 32)


def check_supply(chain: Chain) -> None:
    breakdown = q.get_supply_breakdown(chain.state)
    assert breakdown["total"] == breakdown["genesis_supply"]


def setup(
    params: dict[str, Any] | None = None, executors: int = 4, fee: int = FEE
) -> tuple[Chain, list[bytes], list[bytes]]:
    """Two assets, the buyer's grants for both, ``executors`` registered executors."""
    chain = Chain(genesis=make_genesis(params))
    assets = []
    for i, provider in enumerate(PROVIDERS):
        r = chain.run1(
            provider,
            TxKind.REGISTER_ASSET,
            [bytes([i + 3] * 32), H1, 10_000, H2, ["digits"], "CC-BY-4.0", 100 * TOKEN, b"c"],
        )
        assert r.ok, r.reason
        assets.append(r.result)
    grants = []
    for asset_id in assets:
        req = chain.run1(BUYER, TxKind.REQUEST_ACCESS, [asset_id])
        assert req.ok, req.reason
        assert chain.run1(BUYER, TxKind.SETTLE_ACCESS, [req.result]).ok
        grants.append(req.result)
    for i, ex in enumerate(EXECUTORS[:executors]):
        assert chain.run1(GOV[i % len(GOV)], TxKind.TRANSFER, [ex.pub, 100 * TOKEN]).ok
        r = chain.run1(
            ex, TxKind.REGISTER_EXECUTOR, [20 * TOKEN, fee, f"http://127.0.0.1:{9000 + i}"]
        )
        assert r.ok, r.reason
    check_supply(chain)
    return chain, assets, grants


def spec_obj(assets: list[bytes], **overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "datasets": [a.hex() for a in assets],
        "model": "logreg",
        "tau_ppm": 800_000,
        "bid": BID,
        "rounds": 4,
        "learning_rate": "0.5",
        "seed": 3,
        "aggregation": "fedavg",
    }
    obj.update(overrides)
    return obj


def spec_bytes(assets: list[bytes], **overrides: Any) -> bytes:
    return encode_spec(parse_spec_json(json.dumps(spec_obj(assets, **overrides))))


def submit(chain: Chain, spec: bytes, grants: list[Any], key: Key = BUYER) -> Any:
    return chain.run1(key, TxKind.SUBMIT_JOB, [spec, H1, H2, grants])


def post(chain: Chain, ex: Key, job_id: bytes, digest: bytes = DIGEST, metric: int = 900_000,
         contributions: list[int] | None = None, kept: list[int] | None = None) -> Any:
    return chain.run1(
        ex,
        TxKind.POST_RESULT,
        [job_id, digest, WEIGHTS, metric, contributions or [60_000, -5_000], kept or [4, 1]],
    )


def key_of(pub: bytes) -> Key:
    return next(k for k in EXECUTORS if k.pub == pub)


def balances(chain: Chain, keys: list[bytes]) -> list[int]:
    return [q.get_account(chain.state, k).balance for k in keys]


def assert_refused_before_locking(chain: Chain, receipt: Any, text: str) -> None:
    assert not receipt.ok
    assert text in receipt.reason, receipt.reason
    assert q.get_job(chain.state, receipt.tx_hash) is None
    assert q.get_supply(chain.state).escrow == 0
    check_supply(chain)


def test_refusals_before_anything_is_locked() -> None:
    chain, assets, grants = setup()
    before = q.get_account(chain.state, BUYER.pub).balance

    r = submit(chain, b"\x01garbage", grants)
    assert r.code == ReceiptCode.BAD_PARAMETER
    assert_refused_before_locking(chain, r, "malformed job spec")

    obj = compute_spec_json(parse_spec_json(json.dumps(spec_obj(assets))))
    obj.update(datasets=assets, learning_rate=500_000, model={"name": "resnet50"})
    r = submit(chain, codec.encode(obj), grants)
    assert r.code == ReceiptCode.BAD_PARAMETER
    assert_refused_before_locking(chain, r, "model outside the allow-list")
    assert "resnet50" in r.reason

    r = submit(chain, spec_bytes(assets), [grants[0], grants[0]])
    assert r.code == ReceiptCode.UNAUTHORIZED
    assert_refused_before_locking(chain, r, "dataset 1")
    assert "no settled access grant" in r.reason
    r = submit(chain, spec_bytes(assets), grants, key=OTHER_BUYER)  # grants held by BUYER
    assert_refused_before_locking(chain, r, "no settled access grant")

    # executors' part of a 60-token bid is 18 tokens, below 2 x 10 tokens of fees
    r = submit(chain, spec_bytes(assets, bid=60 * TOKEN), grants)
    assert r.code == ReceiptCode.BAD_PARAMETER
    assert_refused_before_locking(chain, r, "below the executors' fee")
    assert q.get_account(chain.state, BUYER.pub).balance == before

    ok = submit(chain, spec_bytes(assets, bid=67 * TOKEN), grants)  # 20.1 tokens >= 20
    assert ok.ok, ok.reason
    assert q.get_supply(chain.state).escrow == 67 * TOKEN
    check_supply(chain)


def test_submit_assigns_k_executors_deterministically_and_locks_the_bid() -> None:
    chain, assets, grants = setup()
    r = submit(chain, spec_bytes(assets), grants)
    assert r.ok, r.reason
    job = q.get_job(chain.state, r.result)
    assert job is not None and job.status == JOB_OPEN
    registered = [k.pub for k in EXECUTORS[:4]]
    assert job.assigned == compute_assignment_order(r.result, registered)[:2]
    assert q.get_supply(chain.state).escrow == BID
    for pub in job.assigned:
        ex = q.get_executor(chain.state, pub)
        assert ex is not None and ex.open_jobs == 1
        assert q.get_executor_jobs(chain.state, pub) == [r.result]
    assert not setup(executors=1)[0].run1(
        BUYER, TxKind.SUBMIT_JOB, [spec_bytes(assets), H1, H2, grants]
    ).ok


def test_t_of_k_agreement_accepts_anchors_settles_and_updates_q() -> None:
    chain, assets, grants = setup()
    job_id = submit(chain, spec_bytes(assets), grants).result
    job = q.get_job(chain.state, job_id)
    assert job is not None
    a, b = (key_of(p) for p in job.assigned)
    outsider = next(k for k in EXECUTORS[:4] if k.pub not in job.assigned)
    assert post(chain, outsider, job_id).code == ReceiptCode.UNAUTHORIZED
    assert post(chain, a, job_id, contributions=[1, 2, 3]).code == ReceiptCode.BAD_PARAMETER
    providers = [p.pub for p in PROVIDERS]
    before = balances(chain, [BUYER.pub, a.pub, b.pub, *providers])
    q_before = [q.get_asset(chain.state, x).quality_ppm for x in assets]  # type: ignore[union-attr]

    assert post(chain, a, job_id).ok
    assert q.get_job(chain.state, job_id).status == JOB_OPEN  # type: ignore[union-attr]
    assert post(chain, a, job_id).code == ReceiptCode.INVALID_STATE  # one post each
    assert post(chain, b, job_id).ok
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.status == JOB_ACCEPTED
    assert job.digest == DIGEST and job.weights_hash == WEIGHTS and job.metric_ppm == 900_000
    assert job.agreed == [a.pub, b.pub] and job.slashed == []

    expected = compute_settlement(BID, 900_000, 800_000, [1, 1], [60_000, -5_000],
                                  compute_eligible([4, 1], 4))
    assert expected.met and expected.buyer_refund == 0
    assert job.settlement == [0, list(expected.executor_payouts), list(expected.provider_payouts)]
    after = balances(chain, [BUYER.pub, a.pub, b.pub, *providers])
    deltas = [x - y for x, y in zip(after, before, strict=True)]
    assert deltas[1:3] == [15 * TOKEN, 15 * TOKEN]  # 30 % split between the two agreeing
    assert deltas[3:] == list(expected.provider_payouts)
    assert deltas[3] == 70 * TOKEN and deltas[4] == 0  # provider 1 kept in 1 of 4 rounds
    assert deltas[0] == 0
    assert q.get_supply(chain.state).escrow == 0
    new_q = [q.get_asset(chain.state, x).quality_ppm for x in assets]  # type: ignore[union-attr]
    assert new_q == compute_quality([60_000, -5_000], q_before) == job.quality
    assert new_q[1] < new_q[0]
    for pub in job.assigned:
        assert q.get_executor(chain.state, pub).open_jobs == 0  # type: ignore[union-attr]
        assert q.get_executor_jobs(chain.state, pub) == []
    assert post(chain, a, job_id).code == ReceiptCode.INVALID_STATE
    check_supply(chain)


def test_disagreement_doubles_executors_and_the_liar_is_outvoted_and_slashed() -> None:
    chain, assets, grants = setup(executors=5)
    job_id = submit(chain, spec_bytes(assets), grants).result
    first = q.get_job(chain.state, job_id).assigned  # type: ignore[union-attr]
    honest, liar = key_of(first[0]), key_of(first[1])
    burned = q.get_supply(chain.state).burned
    liar_balance = q.get_account(chain.state, liar.pub).balance

    assert post(chain, honest, job_id).ok
    assert post(chain, liar, job_id, digest=LIE).ok
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.status == JOB_OPEN
    assert len(job.assigned) == 4 and job.assigned[:2] == first  # doubled, k = 2 -> 4
    order = compute_assignment_order(job_id, [k.pub for k in EXECUTORS])
    assert job.assigned[2:] == [p for p in order if p not in first][:2]

    third = key_of(job.assigned[2])
    assert post(chain, third, job_id).ok
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.status == JOB_ACCEPTED
    assert job.agreed == [honest.pub, third.pub] and job.slashed == [liar.pub]
    ex = q.get_executor(chain.state, liar.pub)
    assert ex is not None and ex.stake == 10 * TOKEN and ex.slashed == 1  # half of 20 burned
    assert q.get_supply(chain.state).burned - burned == 10 * TOKEN
    assert q.get_account(chain.state, liar.pub).balance == liar_balance  # no pay
    late = key_of(job.assigned[3])
    assert q.get_executor(chain.state, late.pub).open_jobs == 0  # type: ignore[union-attr]
    assert q.get_executor_jobs(chain.state, late.pub) == []
    assert post(chain, late, job_id, digest=LIE).ok  # a late liar is slashed too
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.slashed == [liar.pub, late.pub]
    assert q.get_executor(chain.state, late.pub).stake == 10 * TOKEN  # type: ignore[union-attr]
    assert q.get_supply(chain.state).burned - burned == 20 * TOKEN
    check_supply(chain)


def late_setup() -> tuple[Chain, bytes, list[Key]]:
    """k = 4, t = 2: the first two equal posts accept; two assigned executors remain."""
    chain, assets, grants = setup({"job_replication": 4}, executors=5, fee=5 * TOKEN)
    job_id = submit(chain, spec_bytes(assets), grants).result
    keys = [key_of(p) for p in q.get_job(chain.state, job_id).assigned]  # type: ignore[union-attr]
    assert post(chain, keys[0], job_id).ok and post(chain, keys[1], job_id).ok
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.status == JOB_ACCEPTED and job.slashed == []
    return chain, job_id, keys


def test_late_differing_post_is_slashed_like_a_dissenter_at_acceptance() -> None:
    from ledger.rules import compute_slash
    from node.jobs_doc import get_job_doc

    chain, job_id, keys = late_setup()
    accepted = q.get_job(chain.state, job_id)
    late, late2 = keys[2], keys[3]
    supply = q.get_supply(chain.state)
    stake = q.get_executor(chain.state, late.pub).stake  # type: ignore[union-attr]
    paid = balances(chain, [BUYER.pub, *(k.pub for k in keys), *(p.pub for p in PROVIDERS)])
    slash = compute_slash(stake, chain.state.get_params().slash_executor_ppm)
    assert slash == stake // 2 > 0

    r = post(chain, late, job_id, digest=LIE)
    assert r.ok, r.reason
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.status == JOB_ACCEPTED and job.slashed == [late.pub]
    assert job.posts[-1][0] == late.pub and job.posts[-1][1] == LIE
    ex = q.get_executor(chain.state, late.pub)
    assert ex is not None and ex.stake == stake - slash and ex.slashed == 1
    after = q.get_supply(chain.state)
    assert after.burned - supply.burned == slash
    assert supply.asset_stakes - after.asset_stakes == slash
    # the settlement is final: nobody's balance moved, the anchored result is unchanged
    assert balances(chain, [BUYER.pub, *(k.pub for k in keys), *(p.pub for p in PROVIDERS)]) == paid
    assert accepted is not None and (job.digest, job.agreed, job.settlement, job.quality) == (
        accepted.digest, accepted.agreed, accepted.settlement, accepted.quality)
    doc = get_job_doc(chain.state, job_id)
    assert doc is not None and doc["slashed"] == [late.pub.hex()]
    assert doc["posts"][-1]["digest"] == LIE.hex()

    # the whole tuple is compared: same digest, different metric also differs
    r = post(chain, late2, job_id, metric=850_000)
    assert r.ok, r.reason
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.slashed == [late.pub, late2.pub]
    assert q.get_supply(chain.state).burned - supply.burned == 2 * slash
    # posting twice stays refused, and changes nothing
    r = post(chain, late, job_id, digest=LIE)
    assert r.code == ReceiptCode.INVALID_STATE and "already posted" in r.reason
    assert q.get_executor(chain.state, late.pub).stake == stake - slash  # type: ignore[union-attr]
    assert q.get_supply(chain.state).burned - supply.burned == 2 * slash
    check_supply(chain)


def test_late_equal_post_is_recorded_without_payment_or_slashing() -> None:
    chain, job_id, keys = late_setup()
    accepted = q.get_job(chain.state, job_id)
    late = keys[2]
    supply = q.get_supply(chain.state)
    stake = q.get_executor(chain.state, late.pub).stake  # type: ignore[union-attr]
    paid = balances(chain, [BUYER.pub, *(k.pub for k in keys), *(p.pub for p in PROVIDERS)])

    r = post(chain, late, job_id)
    assert r.ok, r.reason
    job = q.get_job(chain.state, job_id)
    assert job is not None and accepted is not None
    assert len(job.posts) == 3 and job.posts[-1][0] == late.pub
    assert job.slashed == [] and job.agreed == accepted.agreed
    assert job.settlement == accepted.settlement
    ex = q.get_executor(chain.state, late.pub)
    assert ex is not None and ex.stake == stake and ex.slashed == 0 and ex.accepted == 0
    assert balances(chain, [BUYER.pub, *(k.pub for k in keys), *(p.pub for p in PROVIDERS)]) == paid
    assert q.get_supply(chain.state) == supply
    r = post(chain, late, job_id)
    assert r.code == ReceiptCode.INVALID_STATE and "already posted" in r.reason
    check_supply(chain)


def test_late_posts_by_outsiders_or_past_the_deadline_stay_refused() -> None:
    chain, assets, grants = setup({"job_replication": 4, "job_timeout": 4}, executors=5,
                                  fee=5 * TOKEN)
    job_id = submit(chain, spec_bytes(assets), grants).result
    job = q.get_job(chain.state, job_id)
    assert job is not None
    keys = [key_of(p) for p in job.assigned]
    outsider = next(k for k in EXECUTORS if k.pub not in job.assigned)
    assert post(chain, keys[0], job_id).ok and post(chain, keys[1], job_id).ok
    supply = q.get_supply(chain.state)
    r = post(chain, outsider, job_id, digest=LIE)
    assert r.code == ReceiptCode.UNAUTHORIZED and "not assigned" in r.reason
    assert q.get_executor(chain.state, outsider.pub).slashed == 0  # type: ignore[union-attr]
    for _ in range(4):
        chain.run([])
    r = post(chain, keys[2], job_id, digest=LIE)
    assert r.code == ReceiptCode.INVALID_STATE and "deadline" in r.reason
    assert q.get_executor(chain.state, keys[2].pub).slashed == 0  # type: ignore[union-attr]
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.slashed == [] and len(job.posts) == 2
    after = q.get_supply(chain.state)
    assert (after.burned, after.asset_stakes) == (supply.burned, supply.asset_stakes)
    check_supply(chain)


def test_below_tau_refunds_the_data_part_and_pays_executors() -> None:
    chain, assets, grants = setup()
    job_id = submit(chain, spec_bytes(assets), grants).result
    a, b = (key_of(p) for p in q.get_job(chain.state, job_id).assigned)  # type: ignore[union-attr]
    before = balances(chain, [BUYER.pub, a.pub, b.pub, *(p.pub for p in PROVIDERS)])
    assert post(chain, a, job_id, metric=700_000).ok
    assert post(chain, b, job_id, metric=700_000).ok
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.status == JOB_ACCEPTED and job.metric_ppm == 700_000
    after = balances(chain, [BUYER.pub, a.pub, b.pub, *(p.pub for p in PROVIDERS)])
    deltas = [x - y for x, y in zip(after, before, strict=True)]
    assert deltas == [70 * TOKEN, 15 * TOKEN, 15 * TOKEN, 0, 0]
    assert job.settlement == [70 * TOKEN, [15 * TOKEN, 15 * TOKEN], [0, 0]]
    check_supply(chain)


def test_job_past_its_deadline_expires_with_a_full_refund() -> None:
    chain, assets, grants = setup({"job_timeout": 2})
    job_id = submit(chain, spec_bytes(assets), grants).result
    a = key_of(q.get_job(chain.state, job_id).assigned[0])  # type: ignore[union-attr]
    assert post(chain, a, job_id).ok
    before = q.get_account(chain.state, BUYER.pub).balance
    assert chain.run1(BUYER, TxKind.EXPIRE_JOB, [job_id]).code == ReceiptCode.INVALID_STATE
    chain.run([])
    r = chain.run1(OTHER_BUYER, TxKind.EXPIRE_JOB, [job_id])
    assert r.ok, r.reason
    job = q.get_job(chain.state, job_id)
    assert job is not None and job.status == JOB_EXPIRED
    assert q.get_account(chain.state, BUYER.pub).balance - before == BID
    assert q.get_executor(chain.state, a.pub).open_jobs == 0  # type: ignore[union-attr]
    assert q.get_supply(chain.state).escrow == 0
    check_supply(chain)


def test_executor_registration_stake_and_unregistration() -> None:
    chain, assets, grants = setup(executors=2)
    newcomer = EXECUTORS[4]
    assert chain.run1(GOV[0], TxKind.TRANSFER, [newcomer.pub, 100 * TOKEN]).ok
    low = chain.run1(newcomer, TxKind.REGISTER_EXECUTOR, [5 * TOKEN, FEE, ""])
    assert low.code == ReceiptCode.BAD_PARAMETER and "below the minimum" in low.reason
    bad = chain.run1(newcomer, TxKind.REGISTER_EXECUTOR, [20 * TOKEN, FEE, "ftp://x"])
    assert bad.code == ReceiptCode.BAD_PARAMETER
    job_id = submit(chain, spec_bytes(assets), grants).result
    busy = key_of(q.get_job(chain.state, job_id).assigned[0])  # type: ignore[union-attr]
    r = chain.run1(busy, TxKind.UNREGISTER_EXECUTOR, [])
    assert r.code == ReceiptCode.INVALID_STATE and "open job" in r.reason
    assert chain.run1(newcomer, TxKind.REGISTER_EXECUTOR, [20 * TOKEN, FEE, ""]).ok
    balance = q.get_account(chain.state, newcomer.pub).balance
    assert chain.run1(newcomer, TxKind.UNREGISTER_EXECUTOR, []).ok
    assert q.get_account(chain.state, newcomer.pub).balance - balance == 20 * TOKEN
    assert [a for a, _ in q.get_executors(chain.state)] == sorted(k.pub for k in EXECUTORS[:2])
    assert chain.run1(newcomer, TxKind.REGISTER_EXECUTOR, [20 * TOKEN, FEE, ""]).ok  # again
    assert newcomer.pub in [a for a, _ in q.get_executors(chain.state)]
    assert q.get_executor(chain.state, newcomer.pub).stake == 20 * TOKEN  # type: ignore[union-attr]
    check_supply(chain)


def test_job_and_executor_documents_show_the_result_and_settlement() -> None:
    from node.jobs_doc import get_executor_doc, get_job_doc

    chain, assets, grants = setup()
    job_id = submit(chain, spec_bytes(assets), grants).result
    assigned = q.get_job(chain.state, job_id).assigned  # type: ignore[union-attr]
    for pub in assigned:
        assert post(chain, key_of(pub), job_id).ok
    doc = get_job_doc(chain.state, job_id)
    assert doc is not None and doc["status"] == "accepted" and doc["spec"]["model"] == {
        "name": "logreg"
    }
    assert [e["endpoint"].startswith("http://") for e in doc["assigned"]] == [True, True]
    assert [p["digest"] for p in doc["posts"]] == [DIGEST.hex()] * 2
    assert doc["weights_hash"] == WEIGHTS.hex() and doc["contributions_ppm"] == [60_000, -5_000]
    assert [p["amount"] for p in doc["settlement"]["providers"]] == [70 * TOKEN, 0]
    assert doc["settlement"]["providers"][0]["provider"] == PROVIDERS[0].pub.hex()
    assert [x["quality_ppm"] for x in doc["quality"]] == [
        q.get_asset(chain.state, a).quality_ppm for a in assets  # type: ignore[union-attr]
    ]
    ex = get_executor_doc(chain.state, assigned[0])
    assert ex is not None and ex["accepted"] == 1 and ex["open_jobs"] == []
    assert get_job_doc(chain.state, bytes(32)) is None
    assert get_executor_doc(chain.state, bytes(32)) is None


# -- JOB_KEYS: the validation-data key sealed to each assigned executor, on chain ----------

SEALED = bytes([6] * 80)  # a 32-byte key in a NaCl SealedBox is 80 bytes


def job_keys(chain: Chain, job_id: bytes, entries: list[Any], key: Key = BUYER) -> Any:
    return chain.run1(key, TxKind.JOB_KEYS, [job_id, entries])


def sealed_keys(chain: Chain, job_id: bytes) -> dict[bytes, bytes]:
    job = q.get_job(chain.state, job_id)
    assert job is not None
    return dict(q.get_job_sealed_keys(chain.state, job_id, job.assigned))


def test_job_keys_are_stored_for_assigned_executors_once_and_shown_in_the_job_doc() -> None:
    from node.jobs_doc import get_job_doc

    chain, assets, grants = setup()
    job_id = submit(chain, spec_bytes(assets), grants).result
    a, b = q.get_job(chain.state, job_id).assigned  # type: ignore[union-attr]
    r = job_keys(chain, job_id, [[a, SEALED]])
    assert r.ok, r.reason
    assert sealed_keys(chain, job_id) == {a: SEALED}
    doc = get_job_doc(chain.state, job_id)
    assert doc is not None and doc["keys"] == [{"executor": a.hex(), "sealed_key": SEALED.hex()}]
    # a repeat is refused as a whole (a delivered key never changes), the rest is not stored
    r = job_keys(chain, job_id, [[b, SEALED], [a, bytes(80)]])
    assert r.code == ReceiptCode.INVALID_STATE and "already holds a key" in r.reason
    assert sealed_keys(chain, job_id) == {a: SEALED}
    assert job_keys(chain, job_id, [[b, bytes([5] * 80)]]).ok
    assert sealed_keys(chain, job_id) == {a: SEALED, b: bytes([5] * 80)}
    check_supply(chain)


def test_job_keys_refusals() -> None:
    chain, assets, grants = setup(executors=5)
    job_id = submit(chain, spec_bytes(assets), grants).result
    assigned = q.get_job(chain.state, job_id).assigned  # type: ignore[union-attr]
    outsider = next(k.pub for k in EXECUTORS if k.pub not in assigned)

    def refused(receipt: Any, code: ReceiptCode, text: str) -> None:
        assert not receipt.ok and receipt.code == code, (receipt.code, receipt.reason)
        assert text in receipt.reason, receipt.reason
        assert sealed_keys(chain, job_id) == {}

    refused(job_keys(chain, job_id, [[assigned[0], SEALED]], key=OTHER_BUYER),
            ReceiptCode.UNAUTHORIZED, "only the job's buyer")
    refused(job_keys(chain, job_id, [[assigned[0], SEALED]], key=key_of(assigned[0])),
            ReceiptCode.UNAUTHORIZED, "only the job's buyer")
    refused(job_keys(chain, bytes([4] * 32), [[assigned[0], SEALED]]),
            ReceiptCode.NOT_FOUND, "no such job")
    refused(job_keys(chain, job_id, [[outsider, SEALED]]), ReceiptCode.UNAUTHORIZED,
            "is not assigned")
    refused(job_keys(chain, job_id, [[assigned[0], bytes(257)]]), ReceiptCode.BAD_PARAMETER,
            "sealed key is 1..256 bytes")
    refused(job_keys(chain, job_id, [[assigned[0], b""]]), ReceiptCode.BAD_PARAMETER,
            "sealed key is 1..256 bytes")
    refused(job_keys(chain, job_id, []), ReceiptCode.BAD_PARAMETER, "1..8 entries")
    refused(job_keys(chain, job_id, [[assigned[0], SEALED]] * 9), ReceiptCode.BAD_PARAMETER,
            "1..8 entries")
    refused(job_keys(chain, job_id, [[assigned[0], SEALED], [assigned[0], SEALED]]),
            ReceiptCode.BAD_PARAMETER, "listed twice")
    refused(job_keys(chain, job_id, [[assigned[0][:31], SEALED]]), ReceiptCode.BAD_PARAMETER,
            "must be [32-byte executor, sealed key]")
    refused(job_keys(chain, job_id, [assigned[0]]), ReceiptCode.BAD_PARAMETER,
            "must be [32-byte executor, sealed key]")
    refused(job_keys(chain, job_id, [[assigned[0], SEALED, b""]]), ReceiptCode.BAD_PARAMETER,
            "must be [32-byte executor, sealed key]")

    # executors added by a widening can get theirs; then the job closes and no more keys
    assert job_keys(chain, job_id, [[a, SEALED] for a in assigned]).ok
    assert post(chain, key_of(assigned[0]), job_id).ok
    assert post(chain, key_of(assigned[1]), job_id, digest=LIE).ok
    widened = q.get_job(chain.state, job_id).assigned  # type: ignore[union-attr]
    assert len(widened) == 4
    assert job_keys(chain, job_id, [[a, SEALED] for a in widened[2:]]).ok
    assert set(sealed_keys(chain, job_id)) == set(widened)
    assert post(chain, key_of(widened[2]), job_id).ok  # accepted: the job is closed
    r = job_keys(chain, job_id, [[widened[3], SEALED]])
    assert r.code == ReceiptCode.INVALID_STATE and "job is accepted" in r.reason
    check_supply(chain)


def test_job_keys_refused_past_the_deadline_and_after_expiry() -> None:
    chain, assets, grants = setup({"job_timeout": 2})
    job_id = submit(chain, spec_bytes(assets), grants).result
    a = q.get_job(chain.state, job_id).assigned[0]  # type: ignore[union-attr]
    chain.run([])
    chain.run([])
    r = job_keys(chain, job_id, [[a, SEALED]])
    assert r.code == ReceiptCode.INVALID_STATE and "deadline" in r.reason
    assert chain.run1(OTHER_BUYER, TxKind.EXPIRE_JOB, [job_id]).ok
    r = job_keys(chain, job_id, [[a, SEALED]])
    assert r.code == ReceiptCode.INVALID_STATE and "job is expired" in r.reason
    assert sealed_keys(chain, job_id) == {}
