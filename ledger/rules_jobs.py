"""Training-job rules (kinds 30-35): executors, jobs, replicated results, settlement.

Executors. ``register_executor`` locks at least ``min_executor_stake`` (kept in
``Supply.asset_stakes``, the bucket of stakes that back off-chain service)
and records the executor's fee per job and the HTTP endpoint from which it
serves sealed models. Registering again tops the stake up and updates fee and
endpoint. ``unregister_executor`` returns the stake when no open job is
assigned to the executor.

Jobs. ``submit_job`` carries the canonical spec bytes (:func:`ml.spec.encode_spec`),
the hash of the buyer's validation dataset and of its encrypted blob, and one
access grant id per dataset. Every check runs before any token moves, and
each refusal names its cause: a malformed spec (the :class:`ml.spec.SpecError`
text, which names the field), a model outside the allow-list, a dataset
without a settled grant held by the buyer, too few registered executors, and
a bid whose executors' part (``job_executor_share_ppm``) is below the sum of
the assigned executors' fees. Success moves the bid into escrow and assigns
``job_replication`` executors: the registered, active executors other than
the buyer, ordered by ``SHA-256(job id || executor key)`` (no randomness
source: the job id is the transaction hash).

Results. An assigned executor posts once: result digest, weights hash,
metric, per-dataset contributions and kept counts. Posts are compared as the
whole tuple. When ``job_agreement`` posts are identical the result is
accepted in the same transaction: the executors that posted it are paid, the
executors whose post differs are slashed ``slash_executor_ppm`` of their
executor stake (burned; they are listed in the job's ``slashed``), the bid
is split by :func:`ml.settlement.compute_settlement`
(executors' part equally among the agreeing executors; data part to the
eligible providers, or refunded to the buyer when ``metric < tau``), each
dataset's q is updated by :func:`ml.quality.compute_quality`, and the weights
hash is anchored on the job. When every assigned executor has posted and no
result has ``job_agreement`` votes, the assigned set doubles (up to
``job_max_executors``) with the next executors in the job's order; when no
executor can be added the job waits for its deadline.

Late posts. An assigned executor that had not posted when the result was
accepted may still post once, up to the job's deadline. The post is recorded
in the job's ``posts``. If it differs from the accepted result (same whole-tuple
comparison) the executor is slashed exactly like a dissenter at acceptance:
``slash_executor_ppm`` of its executor stake, burned, and it is appended to
the job's ``slashed``. If it equals the accepted result it is recorded and
nothing else happens: the settlement is final, so the late executor is not
paid and not added to ``agreed``. Posts by non-assigned accounts, second
posts, posts past the deadline and posts to an expired job stay refused.

Keys. ``job_keys`` (kind 35) is how the buyer hands the AES key of its
encrypted validation data to the executors: a list of ``[executor, key sealed
to that executor's account key]`` pairs, stored under
``schema.job_sealed_key_key(job id, executor)`` and shown in the job document.
Only the buyer, only while the job is open, only executors assigned to the
job, each at most once per transaction and once per job (a repeat is refused:
a key an executor may already have used never changes), at most
``min(MAX_JOB_KEYS, job_max_executors)`` entries, each sealed key at most
``MAX_SEALED_KEY_SIZE`` bytes. Executors added by a widening get theirs in a
later ``job_keys``.

Failure. After ``deadline`` (``job_timeout`` blocks after submission) anyone
may expire an open job: the whole bid returns to the buyer, no executor is
paid (no result was verified) and none is slashed (with no accepted result
nobody is known to have lied).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensus.crypto import compute_hash
from ml.quality import QualityError, compute_quality
from ml.settlement import (
    SettlementError,
    SettlementPolicy,
    compute_eligible,
    compute_settlement,
)
from ml.spec import MODELS, JobSpec, SpecError, compute_spec_hash, decode_spec

from ledger import schema
from ledger import tx as t
from ledger.errors import ReceiptCode, RuleError
from ledger.genesis import PPM
from ledger.records import (
    ACCESS_GRANTED,
    JOB_ACCEPTED,
    JOB_EXPIRED,
    JOB_OPEN,
    Access,
    Asset,
    Executor,
    Job,
)
from ledger.rules import Env, _change_balance, _move_supply, compute_slash
from ledger.state import State

MAX_EXECUTORS = 256  # registered executors (bounds the assignment scan)
MAX_ENDPOINT_LEN = t.MAX_ENDPOINT_LEN


def _fail(code: ReceiptCode, reason: str) -> RuleError:
    return RuleError(code, reason)


def get_executor_list(state: State) -> list[bytes]:
    """Return the registered executor accounts (sorted; at most MAX_EXECUTORS)."""
    value: list[bytes] | None = state.get(schema.EXECUTORS_KEY)
    return list(value or [])


def compute_assignment_order(job_id: bytes, executors: list[bytes]) -> list[bytes]:
    """Return ``executors`` ordered by ``SHA-256(job_id || key)``, ties by key."""
    return sorted(executors, key=lambda key: (compute_hash(job_id + key), key))


def _get_executor(state: State, account: bytes) -> Executor | None:
    value: Executor | None = state.get(schema.executor_key(account))
    return value


def _get_job(state: State, job_id: bytes) -> Job:
    job: Job | None = state.get(schema.job_key(job_id))
    if job is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such job")
    return job


def _eligible_executors(state: State, buyer: bytes, exclude: list[bytes]) -> list[bytes]:
    minimum = state.get_params().min_executor_stake
    result = []
    for account in get_executor_list(state):
        if account == buyer or account in exclude:
            continue
        ex = _get_executor(state, account)
        if ex is not None and ex.active and ex.stake >= minimum:
            result.append(account)
    return result


def _set_open_jobs(
    state: State, job_id: bytes, accounts: list[bytes], delta: int, height: int
) -> None:
    for account in accounts:
        ex = _get_executor(state, account)
        if ex is not None:
            state.put(
                schema.executor_key(account), ex._replace(open_jobs=max(0, ex.open_jobs + delta))
            )
        state.put(schema.executor_job_key(account, job_id), height if delta > 0 else None)


# -- executors ----------------------------------------------------------------


def process_register_executor(state: State, tx: t.Tx, env: Env) -> bytes:
    """Register (or top up) the sender as an executor; its stake stays >= the minimum."""
    args: t.RegisterExecutor = tx.args
    params = state.get_params()
    if args.endpoint and not args.endpoint.startswith(("http://", "https://")):
        raise _fail(ReceiptCode.BAD_PARAMETER, "endpoint must be an http:// or https:// URL")
    current = _get_executor(state, tx.sender)
    stake = args.stake + (current.stake if current is not None else 0)
    if stake < params.min_executor_stake:
        raise _fail(
            ReceiptCode.BAD_PARAMETER,
            f"executor stake {stake} is below the minimum {params.min_executor_stake}",
        )
    executors = get_executor_list(state)
    if tx.sender not in executors:  # new, or registering again after unregistering
        if len(executors) >= MAX_EXECUTORS:
            raise _fail(ReceiptCode.INVALID_STATE, f"{MAX_EXECUTORS} executors already registered")
        state.put(schema.EXECUTORS_KEY, sorted([*executors, tx.sender]))
    if current is None:
        current = Executor(0, 0, "", True, env.height, 0, 0, 0)
    if args.stake:
        _change_balance(state, tx.sender, -args.stake)
        _move_supply(state, balances=-args.stake, asset_stakes=args.stake)
    state.put(
        schema.executor_key(tx.sender),
        current._replace(stake=stake, fee=args.fee, endpoint=args.endpoint, active=True),
    )
    return b""


def process_unregister_executor(state: State, tx: t.Tx, env: Env) -> bytes:
    """Return the sender's executor stake and deactivate it; refused while jobs are open."""
    ex = _get_executor(state, tx.sender)
    if ex is None or (not ex.active and ex.stake == 0):
        raise _fail(ReceiptCode.NOT_FOUND, "sender is not a registered executor")
    if ex.open_jobs:
        raise _fail(
            ReceiptCode.INVALID_STATE, f"executor is assigned to {ex.open_jobs} open job(s)"
        )
    _change_balance(state, tx.sender, ex.stake)
    _move_supply(state, asset_stakes=-ex.stake, balances=ex.stake)
    state.put(schema.executor_key(tx.sender), ex._replace(stake=0, active=False))
    state.put(schema.EXECUTORS_KEY, [a for a in get_executor_list(state) if a != tx.sender])
    return b""


# -- jobs ------------------------------------------------------------------------


def _decode_job_spec(raw: bytes) -> JobSpec:
    try:
        spec = decode_spec(raw)
    except SpecError as exc:
        if exc.field == "model.name":
            raise _fail(
                ReceiptCode.BAD_PARAMETER,
                f"model outside the allow-list ({', '.join(MODELS)}): {exc}",
            ) from exc
        raise _fail(ReceiptCode.BAD_PARAMETER, f"malformed job spec: {exc}") from exc
    except (ValueError, TypeError, RecursionError) as exc:  # hostile bytes never crash
        raise _fail(ReceiptCode.BAD_PARAMETER, f"malformed job spec: {exc}") from exc
    return spec


def _check_grants(state: State, buyer: bytes, spec: JobSpec, grant_ids: list[Any]) -> None:
    if len(grant_ids) != len(spec.datasets):
        raise _fail(
            ReceiptCode.BAD_PARAMETER,
            f"{len(grant_ids)} grant ids for {len(spec.datasets)} datasets (one per dataset)",
        )
    for index, (asset_id, grant_id) in enumerate(zip(spec.datasets, grant_ids, strict=True)):
        where = f"dataset {index} ({asset_id.hex()[:16]})"
        asset: Asset | None = state.get(schema.asset_key(asset_id))
        if asset is None:
            raise _fail(ReceiptCode.NOT_FOUND, f"{where}: no such asset")
        grant: Access | None = None
        if isinstance(grant_id, bytes) and len(grant_id) == 32:
            grant = state.get(schema.access_key(grant_id))
        if (
            grant is None
            or grant.consumer != buyer
            or grant.asset_id != asset_id
            or grant.status != ACCESS_GRANTED
        ):
            raise _fail(
                ReceiptCode.UNAUTHORIZED,
                f"{where}: the buyer holds no settled access grant for this dataset",
            )


def process_submit_job(state: State, tx: t.Tx, env: Env) -> bytes:
    """Validate a job, lock its bid in escrow and assign executors; the job id is the tx hash."""
    args: t.SubmitJob = tx.args
    params = state.get_params()
    spec = _decode_job_spec(args.spec)
    _check_grants(state, tx.sender, spec, args.grant_ids)
    order = compute_assignment_order(tx.tx_hash, _eligible_executors(state, tx.sender, []))
    k = params.job_replication
    if len(order) < k:
        raise _fail(
            ReceiptCode.INVALID_STATE,
            f"{len(order)} eligible executors registered, the job needs {k}",
        )
    assigned = order[:k]
    fees = 0
    for account in assigned:
        ex = _get_executor(state, account)
        fees += ex.fee if ex is not None else 0
    executor_part = spec.bid * params.job_executor_share_ppm // PPM
    if executor_part < fees:
        raise _fail(
            ReceiptCode.BAD_PARAMETER,
            f"bid {spec.bid} is below the executors' fee: its executors' part {executor_part} "
            f"does not cover the {k} assigned executors' fees {fees}",
        )
    if state.get(schema.job_key(tx.tx_hash)) is not None:
        raise _fail(ReceiptCode.INVALID_STATE, "job already exists")
    _change_balance(state, tx.sender, -spec.bid)
    _move_supply(state, balances=-spec.bid, escrow=spec.bid)
    job = Job(
        tx.sender,
        bytes(args.spec),
        compute_spec_hash(spec),
        args.validation_hash,
        args.validation_cipher_hash,
        spec.bid,
        JOB_OPEN,
        env.height,
        env.height + params.job_timeout,
        assigned,
        [],
        [],
        [],
        b"",
        b"",
        0,
        [],
        [],
        [],
        [],
        0,
    )
    state.put(schema.job_key(tx.tx_hash), job)
    _set_open_jobs(state, tx.tx_hash, assigned, 1, env.height)
    return tx.tx_hash


def _check_post(args: t.PostResult, spec: JobSpec) -> None:
    n = len(spec.datasets)
    if args.metric_ppm > PPM:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"metric_ppm must be at most {PPM}")
    if len(args.contributions_ppm) != n or not all(
        type(c) is int and -(10**12) <= c <= 10**12 for c in args.contributions_ppm
    ):
        raise _fail(ReceiptCode.BAD_PARAMETER, f"contributions must be {n} bounded integers")
    if len(args.kept_counts) != n or not all(
        type(c) is int and 0 <= c <= spec.rounds for c in args.kept_counts
    ):
        raise _fail(
            ReceiptCode.BAD_PARAMETER, f"kept counts must be {n} integers in [0, {spec.rounds}]"
        )


def _result_of(post: list[Any]) -> tuple[Any, ...]:
    digest, weights_hash, metric, contributions, kept = post[1:6]
    return (digest, weights_hash, metric, tuple(contributions), tuple(kept))


def process_post_result(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record an assigned executor's result; accept and settle, or widen the executor set.

    After acceptance (until the deadline) a late post is recorded: a result
    differing from the accepted one slashes its executor like a dissenter at
    acceptance; an equal one is recorded without payment.
    """
    args: t.PostResult = tx.args
    job = _get_job(state, args.job_id)
    if job.status not in (JOB_OPEN, JOB_ACCEPTED):
        raise _fail(ReceiptCode.INVALID_STATE, f"job is {job.status}")
    if env.height > job.deadline:
        raise _fail(ReceiptCode.INVALID_STATE, f"job deadline {job.deadline} has passed")
    if tx.sender not in job.assigned:
        raise _fail(ReceiptCode.UNAUTHORIZED, "sender is not assigned to this job")
    if any(post[0] == tx.sender for post in job.posts):
        raise _fail(ReceiptCode.INVALID_STATE, "executor already posted a result for this job")
    spec = _decode_job_spec(job.spec)
    _check_post(args, spec)
    post = [
        tx.sender,
        args.digest,
        args.weights_hash,
        args.metric_ppm,
        list(args.contributions_ppm),
        list(args.kept_counts),
    ]
    if job.status == JOB_ACCEPTED:
        state.put(schema.job_key(args.job_id), _record_late_post(state, job, post))
        return b""
    job = job._replace(posts=[*job.posts, post])
    params = state.get_params()
    mine = _result_of(post)
    agreeing = [p[0] for p in job.posts if _result_of(p) == mine]
    if len(agreeing) >= params.job_agreement:
        job = _accept(state, args.job_id, job, spec, post, agreeing, env)
    elif len(job.posts) == len(job.assigned):
        job = _widen(state, args.job_id, job, env.height)
    state.put(schema.job_key(args.job_id), job)
    return b""


def _accepted_result(job: Job) -> tuple[Any, ...]:
    return (
        job.digest,
        job.weights_hash,
        job.metric_ppm,
        tuple(job.contributions_ppm),
        tuple(job.kept_counts),
    )


def _record_late_post(state: State, job: Job, post: list[Any]) -> Job:
    """Record a post that arrives after acceptance; slash it when it differs from the result.

    The settlement is final: an equal late post earns nothing, a differing one
    loses ``slash_executor_ppm`` of its executor stake (burned) and is listed
    in ``slashed``.
    """
    job = job._replace(posts=[*job.posts, post])
    if _result_of(post) == _accepted_result(job):
        return job
    _slash_executor(state, post[0])
    return job._replace(slashed=[*job.slashed, post[0]])


def _slash_executor(state: State, account: bytes) -> int:
    """Burn ``slash_executor_ppm`` of ``account``'s executor stake; return the amount."""
    params = state.get_params()
    ex = _get_executor(state, account)
    if ex is None:
        return 0
    slash = compute_slash(ex.stake, params.slash_executor_ppm)
    stake = ex.stake - slash
    state.put(
        schema.executor_key(account),
        ex._replace(
            stake=stake,
            slashed=ex.slashed + 1,
            active=ex.active and stake >= params.min_executor_stake,
        ),
    )
    _move_supply(state, asset_stakes=-slash, burned=slash)
    return slash


def _widen(state: State, job_id: bytes, job: Job, height: int) -> Job:
    """Double the assigned set (up to the cap) after a disagreement among all posts."""
    cap = state.get_params().job_max_executors
    target = min(cap, 2 * len(job.assigned))
    order = compute_assignment_order(job_id, _eligible_executors(state, job.buyer, job.assigned))
    extra = order[: max(0, target - len(job.assigned))]
    _set_open_jobs(state, job_id, extra, 1, height)
    return job._replace(assigned=[*job.assigned, *extra])


def _accept(
    state: State,
    job_id: bytes,
    job: Job,
    spec: JobSpec,
    post: list[Any],
    agreeing: list[bytes],
    env: Env,
) -> Job:
    """Anchor the agreed result, slash dissenters, settle the bid and update q."""
    params = state.get_params()
    _, digest, weights_hash, metric, contributions, kept = post
    mine = _result_of(post)
    dissenters = [p[0] for p in job.posts if _result_of(p) != mine]
    for account in dissenters:
        _slash_executor(state, account)
    try:
        eligible = compute_eligible(kept, spec.rounds)
        settlement = compute_settlement(
            job.bid,
            metric,
            spec.tau_ppm,
            [1] * len(agreeing),
            contributions,
            eligible,
            SettlementPolicy(params.job_executor_share_ppm, params.job_fixed_share_ppm),
        )
    except SettlementError as exc:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"result cannot be settled: {exc}") from exc
    paid = settlement.buyer_refund
    if settlement.buyer_refund:
        _change_balance(state, job.buyer, settlement.buyer_refund)
    for account, amount in zip(agreeing, settlement.executor_payouts, strict=True):
        paid += amount
        if amount:
            _change_balance(state, account, amount)
    assets: list[tuple[bytes, Asset]] = []
    for asset_id in spec.datasets:
        asset: Asset | None = state.get(schema.asset_key(asset_id))
        if asset is None:
            raise _fail(ReceiptCode.NOT_FOUND, f"dataset {asset_id.hex()} no longer exists")
        assets.append((asset_id, asset))
    for (_, asset), amount in zip(assets, settlement.provider_payouts, strict=True):
        paid += amount
        if amount:
            _change_balance(state, asset.provider, amount)
    if paid != job.bid:
        raise _fail(ReceiptCode.INVALID_STATE, f"settlement paid {paid} of the bid {job.bid}")
    _move_supply(state, escrow=-job.bid, balances=job.bid)
    try:
        quality = compute_quality(contributions, [a.quality_ppm for _, a in assets])
    except QualityError as exc:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"quality update failed: {exc}") from exc
    for (asset_id, asset), q in zip(assets, quality, strict=True):
        state.put(schema.asset_key(asset_id), asset._replace(quality_ppm=q))
    for account in agreeing:
        ex = _get_executor(state, account)
        if ex is not None:
            state.put(schema.executor_key(account), ex._replace(accepted=ex.accepted + 1))
    _set_open_jobs(state, job_id, job.assigned, -1, env.height)
    return job._replace(
        status=JOB_ACCEPTED,
        agreed=list(agreeing),
        slashed=dissenters,
        digest=digest,
        weights_hash=weights_hash,
        metric_ppm=metric,
        contributions_ppm=list(contributions),
        kept_counts=list(kept),
        settlement=[
            settlement.buyer_refund,
            list(settlement.executor_payouts),
            list(settlement.provider_payouts),
        ],
        quality=quality,
        closed_height=env.height,
    )


def process_expire_job(state: State, tx: t.Tx, env: Env) -> bytes:
    """Refund the whole bid of an open job past its deadline; nobody is paid or slashed."""
    args: t.ExpireJob = tx.args
    job = _get_job(state, args.job_id)
    if job.status != JOB_OPEN:
        raise _fail(ReceiptCode.INVALID_STATE, f"job is {job.status}")
    if env.height <= job.deadline:
        raise _fail(ReceiptCode.INVALID_STATE, f"job is open until height {job.deadline}")
    _change_balance(state, job.buyer, job.bid)
    _move_supply(state, escrow=-job.bid, balances=job.bid)
    _set_open_jobs(state, args.job_id, job.assigned, -1, env.height)
    state.put(
        schema.job_key(args.job_id),
        job._replace(status=JOB_EXPIRED, settlement=[job.bid, [], []], closed_height=env.height),
    )
    return b""


# -- validation-data keys (JOB_KEYS) -----------------------------------------------


def get_job_sealed_key(state: State, job_id: bytes, executor: bytes) -> bytes | None:
    """Return the validation-data key of ``job_id`` sealed to ``executor``, or None."""
    value: bytes | None = state.get(schema.job_sealed_key_key(job_id, executor))
    return value


def _check_key_entries(entries: list[Any], assigned: list[bytes], cap: int) -> list[list[bytes]]:
    limit = min(t.MAX_JOB_KEYS, cap)
    if not entries or len(entries) > limit:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"JOB_KEYS carries 1..{limit} entries")
    seen: set[bytes] = set()
    checked = []
    for index, entry in enumerate(entries):
        where = f"entry {index}"
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not isinstance(entry[0], bytes)
            or len(entry[0]) != t.KEY_SIZE
            or not isinstance(entry[1], bytes)
        ):
            raise _fail(
                ReceiptCode.BAD_PARAMETER, f"{where} must be [32-byte executor, sealed key]"
            )
        executor, sealed = entry
        if not 0 < len(sealed) <= t.MAX_SEALED_KEY_SIZE:
            raise _fail(
                ReceiptCode.BAD_PARAMETER,
                f"{where}: a sealed key is 1..{t.MAX_SEALED_KEY_SIZE} bytes",
            )
        if executor in seen:
            raise _fail(ReceiptCode.BAD_PARAMETER, f"{where}: executor listed twice")
        if executor not in assigned:
            raise _fail(
                ReceiptCode.UNAUTHORIZED, f"{where}: executor {executor.hex()[:16]} is not assigned"
            )
        seen.add(executor)
        checked.append([executor, sealed])
    return checked


def process_job_keys(state: State, tx: t.Tx, env: Env) -> bytes:
    """Store the buyer's validation-data key sealed to each listed assigned executor.

    Only the job's buyer, while the job is open and before its deadline; every
    executor must be assigned, listed once, and not hold a key yet: a repeat is
    refused (a delivered key never changes), so the whole transaction is.
    """
    args: t.JobKeys = tx.args
    job = _get_job(state, args.job_id)
    if tx.sender != job.buyer:
        raise _fail(ReceiptCode.UNAUTHORIZED, "only the job's buyer may deliver its keys")
    if job.status != JOB_OPEN:
        raise _fail(ReceiptCode.INVALID_STATE, f"job is {job.status}")
    if env.height > job.deadline:
        raise _fail(ReceiptCode.INVALID_STATE, f"job deadline {job.deadline} has passed")
    entries = _check_key_entries(
        args.entries, job.assigned, state.get_params().job_max_executors
    )
    for index, (executor, _) in enumerate(entries):
        if get_job_sealed_key(state, args.job_id, executor) is not None:
            raise _fail(
                ReceiptCode.INVALID_STATE,
                f"entry {index}: executor {executor.hex()[:16]} already holds a key for this job",
            )
    for executor, sealed in entries:
        state.put(schema.job_sealed_key_key(args.job_id, executor), sealed)
    return b""


JOB_RULES: dict[t.TxKind, Callable[[State, t.Tx, Env], bytes]] = {
    t.TxKind.REGISTER_EXECUTOR: process_register_executor,
    t.TxKind.SUBMIT_JOB: process_submit_job,
    t.TxKind.POST_RESULT: process_post_result,
    t.TxKind.EXPIRE_JOB: process_expire_job,
    t.TxKind.UNREGISTER_EXECUTOR: process_unregister_executor,
    t.TxKind.JOB_KEYS: process_job_keys,
}
