"""Read-only queries over a :class:`ledger.state.State` (and the chain store).

Every function is pure with respect to the state: it never writes. Range
queries are bounded by :data:`MAX_QUERY_ITEMS`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ledger import schema
from ledger.records import (
    Access,
    Account,
    Asset,
    AuditCfragRecord,
    AuditLogEntry,
    AuditRequestRecord,
    Executor,
    GrantRecord,
    Job,
    Kyc,
    KycKfragSet,
    PreKeyRecord,
    Supply,
    Validator,
)
from ledger.rules import is_audit_releasable
from ledger.rules_jobs import get_executor_list, get_job_sealed_key
from ledger.state import State

MAX_QUERY_ITEMS = 1_000

__all__ = [
    "MAX_QUERY_ITEMS",
    "ValidatorInfo",
    "get_access",
    "get_account",
    "get_asset",
    "get_audit_log",
    "get_audit_log_by_subject",
    "get_executor",
    "get_executor_jobs",
    "get_executors",
    "get_job",
    "get_job_sealed_keys",
    "get_kyc",
    "get_stake",
    "get_supply",
    "get_supply_breakdown",
    "get_validator",
    "get_validator_set",
    "get_validator_updates",
    "is_audit_releasable",
    "is_auditor",
]


class ValidatorInfo(NamedTuple):
    """What the consensus layer needs about one active validator."""

    public_key: bytes
    stake: int
    roles: tuple[str, ...]


def get_account(state: State, account: bytes) -> Account:
    """Return the account's balance and next nonce (zeros if unknown)."""
    return state.get_account(account)


def get_validator(state: State, consensus_key: bytes) -> Validator | None:
    """Return the validator record or None."""
    value: Validator | None = state.get(schema.validator_key(consensus_key))
    return value


def get_stake(state: State, consensus_key: bytes) -> int:
    """Return the validator's bonded stake (0 if unknown)."""
    val = get_validator(state, consensus_key)
    return 0 if val is None else val.stake


def get_validator_set(state: State) -> list[ValidatorInfo]:
    """Return the active validators (bonded, not jailed, not tombstoned), sorted by key."""
    result: list[ValidatorInfo] = []
    for key, val in state.iterate(schema.VALIDATOR):
        if val.stake > 0 and not val.jailed and not val.tombstoned:
            result.append(ValidatorInfo(key[1:], val.stake, tuple(val.roles)))
    return result


def get_validator_updates(state: State) -> list[ValidatorInfo]:
    """Return the validators changed by the last applied block, for the consensus layer.

    A jailed, tombstoned or fully unbonded validator is reported with stake 0
    (remove it). Consensus applies updates only at a settled epoch boundary.
    """
    result: list[ValidatorInfo] = []
    for key in sorted(state.changed_validators):
        val = get_validator(state, key)
        if val is None:
            continue
        active = val.stake > 0 and not val.jailed and not val.tombstoned
        result.append(ValidatorInfo(key, val.stake if active else 0, tuple(val.roles)))
    return result


def get_asset(state: State, asset_id: bytes) -> Asset | None:
    """Return the data asset or None."""
    value: Asset | None = state.get(schema.asset_key(asset_id))
    return value


def get_access(state: State, request_id: bytes) -> Access | None:
    """Return the access request / grant or None."""
    value: Access | None = state.get(schema.access_key(request_id))
    return value


def get_kyc(state: State, subject: bytes) -> Kyc | None:
    """Return the subject's KYC record or None."""
    value: Kyc | None = state.get(schema.kyc_key(subject))
    return value


def is_auditor(state: State, account: bytes) -> bool:
    """Return True iff ``account`` is a registered auditor."""
    return state.get(schema.auditor_key(account)) is not None


def get_supply(state: State) -> Supply:
    """Return the supply breakdown record."""
    return state.get_supply()


def get_supply_breakdown(state: State) -> dict[str, int]:
    """Return the supply breakdown as a dict plus ``total`` and ``genesis_supply``.

    ``total == genesis_supply`` always holds.
    """
    supply = state.get_supply()
    result: dict[str, int] = dict(supply._asdict())
    result["total"] = sum(supply)
    result["genesis_supply"] = state.get_chain_record().genesis_supply
    return result


def get_audit_log(state: State, start: int, end: int) -> list[tuple[int, AuditLogEntry]]:
    """Return audit log entries with sequence numbers in ``[start, end)`` (bounded)."""
    end = min(end, start + MAX_QUERY_ITEMS)
    result: list[tuple[int, AuditLogEntry]] = []
    for seq in range(max(0, start), end):
        entry: AuditLogEntry | None = state.get(schema.audit_log_key(seq))
        if entry is None:
            break
        result.append((seq, entry))
    return result


def get_audit_log_by_subject(
    state: State, subject: bytes, limit: int = MAX_QUERY_ITEMS
) -> list[tuple[int, AuditLogEntry]]:
    """Return the audit log entries about ``subject`` (its notifications), oldest first."""
    prefix = schema.AUDIT_BY_SUBJECT + subject
    result: list[tuple[int, AuditLogEntry]] = []
    for key, _height in state.iterate(prefix)[: min(limit, MAX_QUERY_ITEMS)]:
        seq = int.from_bytes(key[len(prefix) :], "big")
        entry: Any = state.get(schema.audit_log_key(seq))
        if entry is not None:
            result.append((seq, entry))
    return result


# -- data access ---------------------------------------------------


def get_pre_key(state: State, account: bytes) -> PreKeyRecord | None:
    """Return the account's registered Umbral key record (REGISTER_PRE_KEY), or None."""
    value: PreKeyRecord | None = state.get(schema.pre_key_key(account))
    return value


def get_grant(state: State, request_id: bytes) -> GrantRecord | None:
    """Return the provider's grant answering access request ``request_id``, or None."""
    value: GrantRecord | None = state.get(schema.grant_key(request_id))
    return value


def get_cfrags(state: State, request_id: bytes) -> list[tuple[bytes, bytes]]:
    """Return ``(proxy, signed cfrag)`` for every cfrag recorded for ``request_id`` (bounded)."""
    prefix = schema.CFRAG + request_id
    return [(key[len(prefix) :], raw) for key, raw in state.iterate(prefix)[:MAX_QUERY_ITEMS]]


def is_asset_revoked(state: State, asset_id: bytes) -> bool:
    """Return True iff the provider revoked ``asset_id`` (REVOKE_ASSET)."""
    return state.get(schema.revoked_key(asset_id)) is not None


def _get_indexed(
    state: State, prefix: bytes, from_height: int, limit: int
) -> list[tuple[bytes, int, bytes]]:
    start = prefix + max(0, from_height).to_bytes(8, "big")
    result: list[tuple[bytes, int, bytes]] = []
    for key, value in state.iterate(prefix):
        if key < start:
            continue
        if len(result) >= min(limit, MAX_QUERY_ITEMS):
            break
        height = int.from_bytes(key[len(prefix) : len(prefix) + 8], "big")
        result.append((key[len(prefix) + 8 :], height, value))
    return result


def get_proxy_grants(
    state: State, proxy: bytes, from_height: int, limit: int = MAX_QUERY_ITEMS
) -> list[tuple[bytes, int, bytes]]:
    """Return ``(request_id, grant height, asset_id)`` of grants naming ``proxy``, oldest first.

    Only grants made at ``from_height`` or later; at most ``limit`` (<= MAX_QUERY_ITEMS).
    """
    return _get_indexed(state, schema.PROXY_GRANT + proxy, from_height, limit)


def get_provider_requests(
    state: State, provider: bytes, from_height: int, limit: int = MAX_QUERY_ITEMS
) -> list[tuple[bytes, int, bytes]]:
    """Return ``(request_id, request height, asset_id)`` of requests to ``provider``'s assets.

    Only requests made at ``from_height`` or later, oldest first; at most ``limit``.
    """
    return _get_indexed(state, schema.PROVIDER_REQUEST + provider, from_height, limit)


# -- KYC audit ------------------------------------------------------------------


def get_kfrag_set(state: State, subject: bytes, auditor: bytes) -> KycKfragSet | None:
    """Return the kfrag set of ``subject``'s credential for ``auditor``, or None."""
    value: KycKfragSet | None = state.get(schema.kyc_kfrags_key(subject, auditor))
    return value


def get_kfrag_auditors(state: State, subject: bytes) -> list[bytes]:
    """Return the auditors holding a kfrag set for ``subject`` (bounded, sorted)."""
    prefix = schema.KYC_KFRAGS + subject
    return [key[len(prefix) :] for key, _ in state.iterate(prefix)[:MAX_QUERY_ITEMS]]


def get_auditors(state: State) -> list[bytes]:
    """Return the registered auditors (bounded, sorted)."""
    return [key[1:] for key, _ in state.iterate(schema.AUDITOR)[:MAX_QUERY_ITEMS]]


def get_audit_request(state: State, request_id: bytes) -> AuditRequestRecord | None:
    """Return the audit request or None."""
    value: AuditRequestRecord | None = state.get(schema.audit_request_key(request_id))
    return value


def get_audit_cfrags(state: State, request_id: bytes) -> list[AuditCfragRecord]:
    """Return every cfrag posted for an audit request (bounded), valid or not."""
    prefix = schema.AUDIT_CFRAG + request_id
    return [value for _, value in state.iterate(prefix)[:MAX_QUERY_ITEMS]]


# -- training jobs ----------------------------------------------------------------



def get_job(state: State, job_id: bytes) -> Job | None:
    """Return the training job record or None."""
    value: Job | None = state.get(schema.job_key(job_id))
    return value


def get_executor(state: State, account: bytes) -> Executor | None:
    """Return the executor record of ``account`` or None."""
    value: Executor | None = state.get(schema.executor_key(account))
    return value


def get_executors(state: State) -> list[tuple[bytes, Executor]]:
    """Return the registered executors (at most MAX_QUERY_ITEMS), sorted by account."""
    result: list[tuple[bytes, Executor]] = []
    for account in get_executor_list(state)[:MAX_QUERY_ITEMS]:
        ex = get_executor(state, account)
        if ex is not None:
            result.append((account, ex))
    return result


def get_executor_jobs(state: State, account: bytes, limit: int = MAX_QUERY_ITEMS) -> list[bytes]:
    """Return the ids of the open jobs assigned to executor ``account`` (bounded)."""
    prefix = schema.EXECUTOR_JOB + account
    items = state.iterate(prefix)[: min(limit, MAX_QUERY_ITEMS)]
    return [key[len(prefix) :] for key, _height in items]


# -- training jobs: validation-data keys -------------------------------------------


def get_job_sealed_keys(
    state: State, job_id: bytes, assigned: list[bytes]
) -> list[tuple[bytes, bytes]]:
    """Return ``(executor, sealed key)`` for each of ``assigned`` holding a JOB_KEYS key."""
    result: list[tuple[bytes, bytes]] = []
    for executor in assigned[:MAX_QUERY_ITEMS]:
        sealed = get_job_sealed_key(state, job_id, executor)
        if sealed is not None:
            result.append((executor, sealed))
    return result
