"""Transactions: kinds, payload shapes, canonical encoding and signatures.

Wire format: ``raw = body || signature`` where ``body`` is the canonical codec
encoding of ``[TX_DOMAIN, chain_id, kind, sender, nonce, fee, payload]`` and
``signature`` is the sender's 64-byte Ed25519 signature over ``body``. The
transaction hash is ``SHA-256(raw)``. One encoding per transaction, so hashes
and signatures are well defined; ``raw`` is at most :data:`MAX_TX_SIZE` bytes.

Accounts are identified by their 32-byte Ed25519 public key (no address hash:
the key is the address, so the signature check needs no lookup).

Each kind has a fixed payload shape (:data:`PAYLOAD_FIELDS`) checked without
state by :func:`decode_tx`; stateful rules live in :mod:`ledger.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, NamedTuple

from consensus import codec
from consensus.crypto import compute_hash, compute_signature, is_valid_signature

from ledger.errors import TxError

TX_DOMAIN = "dmchain/tx/v1"
MAX_TX_SIZE = 80 * 1024
MAX_PROOF_SIZE = 64 * 1024
MAX_CAPSULE_SIZE = 4 * 1024
MAX_COMMITMENT_SIZE = 64
MAX_SIGNATURES = 64
MAX_TAGS = 16
MAX_TAG_LEN = 32
# KYC credential field names, one bound everywhere they appear: credentials
# (pre/kyc.py), KYC_KFRAGS field entries, AUDIT_REQUEST fields, AUDIT_CFRAG field.
MAX_KYC_FIELD_NAME = 64
MAX_TEXT_LEN = 256
MAX_FIELDS = 16
MAX_CHAIN_ID_LEN = 64
SIG_SIZE = 64
KEY_SIZE = 32
UMBRAL_KEY_SIZE = 33  # compressed secp256k1 point (data access)
MAX_SIGNED_CFRAG_SIZE = 4 * 1024  # data access


class TxKind(IntEnum):
    """Transaction kinds. Values are part of the signed bytes: never renumber."""

    TRANSFER = 1
    BOND = 2
    UNBOND = 3
    UNJAIL = 4
    REGISTER_ASSET = 5
    UPDATE_QUALITY = 6
    REQUEST_ACCESS = 7
    SETTLE_ACCESS = 8
    FAIL_ACCESS = 9
    DISPUTE = 10
    SUBMIT_EVIDENCE = 11
    GOVERNANCE = 12
    KYC_REGISTER = 13
    AUDIT_REQUEST = 14
    AUDIT_APPROVE = 15
    AUDIT_OBJECT = 16
    AUDIT_RELEASE = 17
    RETIRE_ASSET = 18
    # -- data access: 19-24 --
    REGISTER_PRE_KEY = 19
    GRANT_ACCESS = 20
    PUBLISH_CFRAG = 21
    REVOKE_ASSET = 22
    # KYC audit (25-29)
    KYC_KFRAGS = 25
    AUDIT_CFRAG = 26
    # -- training jobs : 30-39 --
    REGISTER_EXECUTOR = 30
    SUBMIT_JOB = 31
    POST_RESULT = 32
    EXPIRE_JOB = 33
    UNREGISTER_EXECUTOR = 34
    JOB_KEYS = 35


class Transfer(NamedTuple):
    """Move ``amount`` base units to ``to``."""

    to: bytes
    amount: int


class Bond(NamedTuple):
    """Bond ``amount`` to ``validator`` (roles set it; a new validator needs roles)."""

    validator: bytes
    amount: int
    roles: list[str]


class Unbond(NamedTuple):
    """Start unbonding ``amount`` from ``validator``."""

    validator: bytes
    amount: int


class Unjail(NamedTuple):
    """Unjail ``validator`` (operator only; never after a double-sign ban)."""

    validator: bytes


class RegisterAsset(NamedTuple):
    """Publish a data asset, locking ``stake`` (>= s)."""

    content_hash: bytes
    cipher_hash: bytes
    size_bytes: int
    metadata_hash: bytes
    tags: list[str]
    licence: str
    stake: int
    commitment: bytes


class UpdateQuality(NamedTuple):
    """Set an asset's q (ppm) for oracle round ``seq``, with oracle signatures."""

    asset_id: bytes
    quality_ppm: int
    seq: int
    signatures: list[list[bytes]]


class RequestAccess(NamedTuple):
    """Request access to an asset, locking max(beta, alpha*q*V)."""

    asset_id: bytes


class SettleAccess(NamedTuple):
    """Settle a pending request: pay the provider, record the grant."""

    request_id: bytes


class FailAccess(NamedTuple):
    """Fail a pending request: refund the escrow."""

    request_id: bytes


class Dispute(NamedTuple):
    """Prove that data delivered under ``grant_id`` does not match its commitment."""

    grant_id: bytes
    proof: bytes


class SubmitEvidence(NamedTuple):
    """Equivocation evidence (``consensus.evidence.Evidence.to_wire()``)."""

    evidence: Any


class Governance(NamedTuple):
    """A governance action with k-of-n governance signatures over round ``seq``."""

    action: str
    args: list[Any]
    seq: int
    signatures: list[list[bytes]]


class KycRegister(NamedTuple):
    """Register a subject's encrypted KYC credential (consortium members)."""

    subject: bytes
    credential_commitment: bytes
    capsule: bytes


class AuditRequest(NamedTuple):
    """Open an audit request (registered auditors)."""

    subject: bytes
    order_hash: bytes
    fields: list[str]
    reason: str


class AuditApprove(NamedTuple):
    """Approve an audit request (governance members)."""

    request_id: bytes


class AuditObject(NamedTuple):
    """Object to an audit request inside its time lock (governance members)."""

    request_id: bytes
    reason: str


class RetireAsset(NamedTuple):
    """Return an asset's stake to its provider once no dispute window is open."""

    asset_id: bytes


class AuditRelease(NamedTuple):
    """Record the auditor's release of an approved, releasable request."""

    request_id: bytes


# -- data access --


class RegisterPreKey(NamedTuple):
    """Register (or replace) the sender's Umbral public key and optional verifying key."""

    umbral_key: bytes
    verifying_key: bytes


class GrantAccess(NamedTuple):
    """The provider answers a pending request: m-of-n proxies, one sealed kfrag each."""

    request_id: bytes
    threshold: int
    proxies: list[bytes]
    kfrags: list[bytes]
    wrapped_key: bytes


class PublishCfrag(NamedTuple):
    """A proxy named in a grant publishes its signed capsule fragment."""

    request_id: bytes
    signed_cfrag: bytes


class RevokeAsset(NamedTuple):
    """The provider stops every further request and grant for an asset."""

    asset_id: bytes


# -- KYC audit ------------------------------------------------------------------


class KycKfrags(NamedTuple):
    """Per-field kfrags of a subject's credential for one auditor, sealed to the proxies."""

    subject: bytes
    auditor: bytes
    threshold: int
    verifying_pk: bytes
    receiving_pk: bytes
    proxies: list[bytes]
    fields: list[list[Any]]  # [[field name, [sealed kfrag per proxy, in proxy order]], ...]


class AuditCfrag(NamedTuple):
    """A proxy's signed cfrag for one approved field of one audit request."""

    request_id: bytes
    field: str
    signed_cfrag: bytes


# -- training jobs --------------------------------------------------------------
MAX_SPEC_SIZE = 16 * 1024
MAX_ENDPOINT_LEN = 256


class RegisterExecutor(NamedTuple):
    """Register as executor (or top up): lock ``stake``, declare ``fee`` and an HTTP endpoint."""

    stake: int
    fee: int
    endpoint: str


class SubmitJob(NamedTuple):
    """Post a training job: canonical spec bytes, validation data hashes, one grant per dataset."""

    spec: bytes
    validation_hash: bytes  # SHA-256 of the validation dataset bytes
    validation_cipher_hash: bytes  # SHA-256 of its encrypted blob
    grant_ids: list[Any]  # the buyer's access grant for each dataset, in spec order


class PostResult(NamedTuple):
    """An assigned executor's result for a job (contributions may be negative)."""

    job_id: bytes
    digest: bytes
    weights_hash: bytes
    metric_ppm: int
    contributions_ppm: list[Any]
    kept_counts: list[Any]


class ExpireJob(NamedTuple):
    """Close a job that reached its deadline without an accepted result (refund)."""

    job_id: bytes


class UnregisterExecutor(NamedTuple):
    """Return the sender's executor stake once it has no open job."""


MAX_SEALED_KEY_SIZE = 256  # a 32-byte key in a NaCl SealedBox is 80 bytes
MAX_JOB_KEYS = 64  # [executor, sealed key] pairs in one JOB_KEYS


class JobKeys(NamedTuple):
    """The buyer delivers the validation-data key sealed to assigned executors.

    ``entries`` is a list of ``[executor account (32 bytes), sealed key]`` pairs
    (at most MAX_JOB_KEYS; each sealed key at most MAX_SEALED_KEY_SIZE bytes).
    """

    job_id: bytes
    entries: list[Any]


# Field specs: "b32" 32 bytes; "uint" integer >= 0; ("bytes", n) at most n bytes;
# ("str", n) at most n UTF-8 chars; ("strs", items, len) list of short strings;
# "sigs" list of [public key, signature] pairs; "list" any codec list (checked by the rule).
_B32 = "b32"
_UINT = "uint"
_SIGS = "sigs"
_LIST = "list"

PAYLOAD_FIELDS: dict[TxKind, tuple[type[Any], tuple[Any, ...]]] = {
    TxKind.TRANSFER: (Transfer, (_B32, _UINT)),
    TxKind.BOND: (Bond, (_B32, _UINT, ("strs", 2, 8))),
    TxKind.UNBOND: (Unbond, (_B32, _UINT)),
    TxKind.UNJAIL: (Unjail, (_B32,)),
    TxKind.REGISTER_ASSET: (
        RegisterAsset,
        (
            _B32,
            _B32,
            _UINT,
            _B32,
            ("strs", MAX_TAGS, MAX_TAG_LEN),
            ("str", MAX_TEXT_LEN),
            _UINT,
            ("bytes", MAX_COMMITMENT_SIZE),
        ),
    ),
    TxKind.UPDATE_QUALITY: (UpdateQuality, (_B32, _UINT, _UINT, _SIGS)),
    TxKind.REQUEST_ACCESS: (RequestAccess, (_B32,)),
    TxKind.SETTLE_ACCESS: (SettleAccess, (_B32,)),
    TxKind.FAIL_ACCESS: (FailAccess, (_B32,)),
    TxKind.DISPUTE: (Dispute, (_B32, ("bytes", MAX_PROOF_SIZE))),
    TxKind.SUBMIT_EVIDENCE: (SubmitEvidence, (_LIST,)),
    TxKind.GOVERNANCE: (Governance, (("str", 32), _LIST, _UINT, _SIGS)),
    TxKind.KYC_REGISTER: (KycRegister, (_B32, _B32, ("bytes", MAX_CAPSULE_SIZE))),
    TxKind.AUDIT_REQUEST: (
        AuditRequest,
        (_B32, _B32, ("strs", MAX_FIELDS, MAX_KYC_FIELD_NAME), ("str", MAX_TEXT_LEN)),
    ),
    TxKind.AUDIT_APPROVE: (AuditApprove, (_B32,)),
    TxKind.AUDIT_OBJECT: (AuditObject, (_B32, ("str", MAX_TEXT_LEN))),
    TxKind.AUDIT_RELEASE: (AuditRelease, (_B32,)),
    TxKind.RETIRE_ASSET: (RetireAsset, (_B32,)),
    # -- data access --
    TxKind.REGISTER_PRE_KEY: (
        RegisterPreKey,
        (("bytes", UMBRAL_KEY_SIZE), ("bytes", UMBRAL_KEY_SIZE)),
    ),
    TxKind.GRANT_ACCESS: (
        GrantAccess,
        (_B32, _UINT, _LIST, _LIST, ("bytes", MAX_CAPSULE_SIZE)),
    ),
    TxKind.PUBLISH_CFRAG: (PublishCfrag, (_B32, ("bytes", MAX_SIGNED_CFRAG_SIZE))),
    TxKind.REVOKE_ASSET: (RevokeAsset, (_B32,)),
    # KYC audit
    TxKind.KYC_KFRAGS: (
        KycKfrags,
        (_B32, _B32, _UINT, ("bytes", UMBRAL_KEY_SIZE), ("bytes", UMBRAL_KEY_SIZE), _LIST, _LIST),
    ),
    TxKind.AUDIT_CFRAG: (
        AuditCfrag,
        (_B32, ("str", MAX_KYC_FIELD_NAME), ("bytes", MAX_SIGNED_CFRAG_SIZE)),
    ),
    # -- training jobs  --
    TxKind.REGISTER_EXECUTOR: (RegisterExecutor, (_UINT, _UINT, ("str", MAX_ENDPOINT_LEN))),
    TxKind.SUBMIT_JOB: (SubmitJob, (("bytes", MAX_SPEC_SIZE), _B32, _B32, _LIST)),
    TxKind.POST_RESULT: (PostResult, (_B32, _B32, _B32, _UINT, _LIST, _LIST)),
    TxKind.EXPIRE_JOB: (ExpireJob, (_B32,)),
    TxKind.UNREGISTER_EXECUTOR: (UnregisterExecutor, ()),
    TxKind.JOB_KEYS: (JobKeys, (_B32, _LIST)),
}

_UINT_MAX = (1 << 128) - 1


def _check_field(index: int, spec: Any, value: Any) -> None:
    where = f"payload field {index}"
    if spec == _B32:
        if not isinstance(value, bytes) or len(value) != 32:
            raise TxError(f"{where} must be 32 bytes")
    elif spec == _UINT:
        if type(value) is not int or value < 0 or value > _UINT_MAX:
            raise TxError(f"{where} must be an integer in [0, 2^128)")
    elif spec == _LIST:
        if not isinstance(value, list):
            raise TxError(f"{where} must be a list")
    elif spec == _SIGS:
        if not isinstance(value, list) or len(value) > MAX_SIGNATURES:
            raise TxError(f"{where} must be a list of at most {MAX_SIGNATURES} signatures")
        for pair in value:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not isinstance(pair[0], bytes)
                or len(pair[0]) != KEY_SIZE
                or not isinstance(pair[1], bytes)
                or len(pair[1]) != SIG_SIZE
            ):
                raise TxError(f"{where}: each signature must be [32-byte key, 64-byte signature]")
    elif spec[0] == "bytes":
        if not isinstance(value, bytes) or len(value) > spec[1]:
            raise TxError(f"{where} must be at most {spec[1]} bytes")
    elif spec[0] == "str":
        if not isinstance(value, str) or len(value) > spec[1]:
            raise TxError(f"{where} must be a string of at most {spec[1]} characters")
    elif spec[0] == "strs":
        if not isinstance(value, list) or len(value) > spec[1]:
            raise TxError(f"{where} must be a list of at most {spec[1]} strings")
        for item in value:
            if not isinstance(item, str) or not item or len(item) > spec[2]:
                raise TxError(f"{where}: each item must be 1..{spec[2]} characters")


def compute_payload_args(kind: TxKind, payload: Any) -> Any:
    """Return the typed payload (a NamedTuple) for ``kind``; raises TxError if malformed."""
    cls, specs = PAYLOAD_FIELDS[kind]
    if not isinstance(payload, list) or len(payload) != len(specs):
        raise TxError(f"{kind.name} payload must be a list of {len(specs)} fields")
    for index, (spec, value) in enumerate(zip(specs, payload, strict=True)):
        _check_field(index, spec, value)
    return cls(*payload)


@dataclass(frozen=True, slots=True)
class Tx:
    """A decoded, shape-checked transaction. ``args`` is the typed payload."""

    chain_id: str
    kind: TxKind
    sender: bytes
    nonce: int
    fee: int
    args: Any
    signature: bytes
    body: bytes = field(repr=False)
    raw: bytes = field(repr=False)
    tx_hash: bytes


def compute_tx_body(
    chain_id: str, kind: TxKind, sender: bytes, nonce: int, fee: int, payload: list[Any]
) -> bytes:
    """Return the canonical signed bytes of a transaction."""
    return codec.encode([TX_DOMAIN, chain_id, int(kind), sender, nonce, fee, payload])


def compute_signed_tx(
    seed: bytes,
    chain_id: str,
    kind: TxKind,
    nonce: int,
    payload: list[Any],
    *,
    fee: int = 0,
    sender: bytes | None = None,
) -> bytes:
    """Return the raw bytes of a transaction signed with private ``seed``."""
    from consensus.crypto import compute_public_key

    signer = sender if sender is not None else compute_public_key(seed)
    body = compute_tx_body(chain_id, kind, signer, nonce, fee, payload)
    return body + compute_signature(seed, body)


_BODY_PREFIX = b"\x06\x07" + codec.encode(TX_DOMAIN)
_PREFIX_LEN = len(_BODY_PREFIX)
_TRANSFER_PAYLOAD_HEAD = b"\x06\x02\x04\x20"


def _read_uint(data: bytes, pos: int) -> tuple[int, int]:
    """Read a canonical codec int >= 0 (tag, zigzag varint) at ``pos``; -1 if not one."""
    if pos >= len(data) or data[pos] != 0x03:
        return -1, pos
    pos += 1
    result = 0
    shift = 0
    while pos < len(data) and shift <= 140:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if (b == 0 and shift > 0) or result & 1:
                return -1, pos  # non-canonical or negative: let the codec path judge
            return result >> 1, pos
        shift += 7
    return -1, pos


def _decode_transfer_fast(raw: bytes, body: bytes) -> Tx | None:
    """Decode a canonical transfer without the generic codec; None if not one.

    Accepts exactly the bytes the generic path accepts for a transfer, and
    returns None (never raises) for anything else.
    """
    if not body.startswith(_BODY_PREFIX):
        return None
    pos = _PREFIX_LEN
    if pos + 2 > len(body) or body[pos] != 0x05 or body[pos + 1] >= 0x80:
        return None
    n = body[pos + 1]
    try:
        chain_id = body[pos + 2 : pos + 2 + n].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(chain_id.encode("utf-8")) != n or len(chain_id) > MAX_CHAIN_ID_LEN:
        return None
    pos += 2 + n
    if body[pos : pos + 2] != b"\x03\x02" or body[pos + 2 : pos + 4] != b"\x04\x20":
        return None  # kind 1 (zigzag 2) then a 32-byte sender
    sender = body[pos + 4 : pos + 36]
    pos += 36
    nonce, pos = _read_uint(body, pos)
    fee, pos = _read_uint(body, pos)
    if nonce < 0 or fee < 0 or nonce > _UINT_MAX or fee > _UINT_MAX:
        return None
    if body[pos : pos + 4] != _TRANSFER_PAYLOAD_HEAD:
        return None
    to = body[pos + 4 : pos + 36]
    amount, end = _read_uint(body, pos + 36)
    if len(to) != 32 or amount < 0 or amount > _UINT_MAX or end != len(body):
        return None
    return Tx(
        chain_id,
        TxKind.TRANSFER,
        sender,
        nonce,
        fee,
        Transfer(to, amount),
        raw[-SIG_SIZE:],
        body,
        raw,
        compute_hash(raw),
    )


def decode_tx(raw: bytes) -> Tx:
    """Decode and shape-check raw transaction bytes (no signature check).

    Raises TxError on oversized, malformed or non-canonical input. Transfers
    take a fixed-layout fast path that accepts exactly what the codec accepts.
    """
    if not isinstance(raw, (bytes, bytearray)):
        raise TxError("transaction must be bytes")
    raw = bytes(raw)
    if len(raw) > MAX_TX_SIZE:
        raise TxError(f"transaction is {len(raw)} bytes, limit {MAX_TX_SIZE}")
    if len(raw) <= SIG_SIZE:
        raise TxError("transaction too short")
    body = raw[:-SIG_SIZE]
    fast = _decode_transfer_fast(raw, body)
    if fast is not None:
        return fast
    return _decode_tx_generic(raw, body)


def _decode_tx_generic(raw: bytes, body: bytes) -> Tx:
    try:
        value = codec.decode(body)
    except codec.CodecError as exc:
        raise TxError(f"undecodable transaction: {exc}") from exc
    if not isinstance(value, list) or len(value) != 7 or value[0] != TX_DOMAIN:
        raise TxError("not a dmchain transaction")
    _, chain_id, kind, sender, nonce, fee, payload = value
    if not isinstance(chain_id, str) or len(chain_id) > MAX_CHAIN_ID_LEN:
        raise TxError("bad chain id")
    try:
        tx_kind = TxKind(kind)
    except (ValueError, TypeError) as exc:
        raise TxError(f"unknown transaction kind {kind!r}") from exc
    if not isinstance(sender, bytes) or len(sender) != KEY_SIZE:
        raise TxError("sender must be a 32-byte public key")
    for name, number in (("nonce", nonce), ("fee", fee)):
        if type(number) is not int or number < 0 or number > _UINT_MAX:
            raise TxError(f"{name} must be an integer in [0, 2^128)")
    args = compute_payload_args(tx_kind, payload)
    return Tx(
        chain_id,
        tx_kind,
        sender,
        nonce,
        fee,
        args,
        raw[-SIG_SIZE:],
        body,
        raw,
        compute_hash(raw),
    )


def is_valid_tx_signature(tx: Tx) -> bool:
    """Return True iff the sender's signature over the body verifies."""
    return is_valid_signature(tx.sender, tx.body, tx.signature)


def get_tx_error(tx: Tx | bytes, chain_id: str) -> str | None:
    """Stateless check: size, encoding, payload shape, chain id and signature.

    Returns None if the transaction may be applied on ``chain_id``, else the reason.
    """
    if not isinstance(tx, Tx):
        try:
            tx = decode_tx(tx)
        except TxError as exc:
            return str(exc)
    if tx.chain_id != chain_id:
        return f"transaction is for chain {tx.chain_id!r}, not {chain_id!r}"
    if not is_valid_tx_signature(tx):
        return "bad signature"
    return None
