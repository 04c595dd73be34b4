"""State records and their canonical encodings, chosen by key prefix.

Records are immutable values (NamedTuples): a rule never mutates a record
in place, it writes a replacement. :func:`encode_record` / :func:`decode_record`
are the only place where a record becomes bytes, so the state digest and the
store agree on one encoding. Accounts use a fixed 24-byte layout (balance
16 bytes, nonce 8 bytes, big-endian) because they are on the hot path; every
other record is a canonical codec list.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from consensus import codec

from ledger import schema
from ledger.errors import StoreError
from ledger.genesis import Params


class Account(NamedTuple):
    """A balance and the next expected nonce."""

    balance: int
    nonce: int


EMPTY_ACCOUNT = Account(0, 0)


class Validator(NamedTuple):
    """A validator keyed by consensus key: operator, roles, stake, jail/ban flags, contact."""

    operator: bytes
    roles: list[str]
    stake: int
    jailed: bool
    tombstoned: bool
    name: str
    peer_id: str
    multiaddr: str
    umbral_key: bytes
    unbonding_heights: list[int]  # heights at which this validator's unbonding matures


class Asset(NamedTuple):
    """A registered data asset with its stake and current quality."""

    provider: bytes
    content_hash: bytes
    cipher_hash: bytes
    size_bytes: int
    metadata_hash: bytes
    tags: list[str]
    licence: str
    stake: int
    commitment: bytes
    quality_ppm: int
    quality_seq: int
    active: bool
    height: int
    pending: int  # access requests not yet settled or failed
    last_activity: int  # height of registration or of the last settlement


ACCESS_PENDING = 0
ACCESS_GRANTED = 1
ACCESS_FAILED = 2
ACCESS_DISPUTED = 3


class Access(NamedTuple):
    """An access request; once settled it is the access grant (same id)."""

    consumer: bytes
    asset_id: bytes
    provider: bytes
    escrow: int
    price: int
    deadline: int
    status: int
    height: int
    settled_height: int


class Kyc(NamedTuple):
    """A subject's encrypted KYC credential and who registered it."""

    subject: bytes
    credential_commitment: bytes
    capsule: bytes
    member: bytes
    height: int


class AuditRequestRecord(NamedTuple):
    """An audit request and its approvals, objections and releases."""

    auditor: bytes
    subject: bytes
    order_hash: bytes
    fields: list[str]
    reason: str
    height: int
    timelock_end: int
    expiry: int
    approvals: list[bytes]
    objections: list[bytes]
    releases: int


class AuditLogEntry(NamedTuple):
    """One audit log entry (also the subject's notification)."""

    height: int
    kind: str
    actor: bytes
    subject: bytes
    request_id: bytes


class Supply(NamedTuple):
    """Where every base unit is. The fields always sum to the genesis supply."""

    balances: int
    validator_stakes: int
    asset_stakes: int
    escrow: int
    unbonding: int
    fee_pool: int
    burned: int


class KeySetRecord(NamedTuple):
    """A k-of-n key set; ``seq`` is the replay counter of governance actions."""

    threshold: int
    keys: list[bytes]
    seq: int


class ChainRecord(NamedTuple):
    """The chain id, genesis hash and genesis supply."""

    chain_id: str
    genesis_hash: bytes
    genesis_supply: int


# -- data access --

ACCESS_DELIVERING = 4  # granted by the provider, waiting for m valid cfrags


class PreKeyRecord(NamedTuple):
    """An account's Umbral public key (33 bytes) and optional verifying key (b"" if none)."""

    umbral_key: bytes
    verifying_key: bytes
    height: int


class GrantRecord(NamedTuple):
    """The provider's answer to an access request: m-of-n proxies and their sealed kfrags.

    ``cfrag_proxies`` lists the proxies whose valid cfrag is recorded (in
    order of arrival); ``slashed_proxies`` those slashed for a wrong one.
    """

    asset_id: bytes
    consumer: bytes
    provider: bytes
    threshold: int
    proxies: list[bytes]
    kfrags: list[bytes]
    wrapped_key: bytes
    capsule: bytes
    delegating_pk: bytes
    verifying_pk: bytes
    receiving_pk: bytes
    height: int
    deadline: int
    cfrag_proxies: list[bytes]
    slashed_proxies: list[bytes]
# -- KYC audit ------------------------------------------------------------------


class KycKfragSet(NamedTuple):
    """Per-field kfrags of a subject's credential for one auditor (sealed to proxies)."""

    subject: bytes
    auditor: bytes
    member: bytes
    threshold: int
    verifying_pk: bytes
    receiving_pk: bytes
    proxies: list[bytes]
    fields: list[list[Any]]  # [[name, [sealed kfrag per proxy]], ...]
    height: int


class AuditCfragRecord(NamedTuple):
    """A signed cfrag posted for one field of an audit request; ``valid`` False = slashed."""

    request_id: bytes
    field: str
    proxy: bytes
    signed_cfrag: bytes
    valid: bool
    height: int


_TUPLE_RECORDS: dict[bytes, type[Any]] = {
    schema.VALIDATOR: Validator,
    schema.ASSET: Asset,
    schema.ACCESS: Access,
    schema.KYC: Kyc,
    schema.AUDIT_REQUEST: AuditRequestRecord,
    schema.AUDIT_LOG: AuditLogEntry,
    # -- data access --
    schema.PRE_KEY: PreKeyRecord,
    schema.GRANT: GrantRecord,
    # KYC audit
    schema.KYC_KFRAGS: KycKfragSet,
    schema.AUDIT_CFRAG: AuditCfragRecord,
}

_META_RECORDS: dict[bytes, type[Any]] = {
    schema.SUPPLY_KEY: Supply,
    schema.GOVERNANCE_KEY: KeySetRecord,
    schema.ORACLE_KEY: KeySetRecord,
    schema.CHAIN_KEY: ChainRecord,
}


def encode_record(key: bytes, value: Any) -> bytes:
    """Return the canonical bytes of the record ``value`` stored under ``key``."""
    prefix = key[:1]
    if prefix == schema.ACCOUNT:
        return int(value[0]).to_bytes(16, "big") + int(value[1]).to_bytes(8, "big")
    if key == schema.PARAMS_KEY:
        return codec.encode(value.to_wire())
    if prefix in _TUPLE_RECORDS or key in _META_RECORDS:
        return codec.encode(list(value))
    # markers (evidence, auditors, subject index), unbonding lists, counters
    return codec.encode(value)


def decode_record(key: bytes, raw: bytes) -> Any:
    """Return the record stored under ``key``; raises StoreError if ``raw`` is corrupt."""
    prefix = key[:1]
    try:
        if prefix == schema.ACCOUNT:
            if len(raw) != 24:
                raise StoreError(f"corrupt account record under {key.hex()}")
            return Account(int.from_bytes(raw[:16], "big"), int.from_bytes(raw[16:], "big"))
        value = codec.decode(raw)
        if key == schema.PARAMS_KEY:
            return Params(**value)
        cls = _TUPLE_RECORDS.get(prefix) or _META_RECORDS.get(key)
        if cls is not None:
            return cls(*value)
        return value
    except (codec.CodecError, TypeError) as exc:
        raise StoreError(f"corrupt record under {key.hex()}: {exc}") from exc


# -- training jobs ---------------------------------------------------


class Executor(NamedTuple):
    """A registered executor: locked stake, fee per job, endpoint and counters."""

    stake: int
    fee: int
    endpoint: str
    active: bool  # False once unregistered or slashed below the minimum stake
    height: int
    open_jobs: int  # open jobs it is assigned to
    accepted: int  # results it posted that were accepted
    slashed: int  # times it was outvoted and slashed


JOB_OPEN = "open"
JOB_ACCEPTED = "accepted"
JOB_EXPIRED = "expired"


class Job(NamedTuple):
    """A training job, its executors' posts and, once accepted, its anchored result.

    ``posts`` holds ``[executor, digest, weights_hash, metric_ppm, contributions, kept_counts]``
    in posting order; ``settlement`` is ``[buyer_refund, executor_payouts, provider_payouts]``
    (payouts in ``agreed`` order and spec dataset order); ``quality`` the new q per dataset.
    """

    buyer: bytes
    spec: bytes
    spec_hash: bytes
    validation_hash: bytes
    validation_cipher_hash: bytes
    bid: int
    status: str
    height: int
    deadline: int
    assigned: list[bytes]
    posts: list[list[Any]]
    agreed: list[bytes]
    slashed: list[bytes]
    digest: bytes
    weights_hash: bytes
    metric_ppm: int
    contributions_ppm: list[int]
    kept_counts: list[int]
    settlement: list[Any]
    quality: list[int]
    closed_height: int


_TUPLE_RECORDS.update({schema.EXECUTOR: Executor, schema.JOB: Job})
