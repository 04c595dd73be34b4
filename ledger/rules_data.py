"""Rules of the data access path: PRE keys, grants, capsule fragments, revocation.

* ``REGISTER_PRE_KEY`` (19): any account registers (or replaces) its Umbral
  public key (33-byte compressed point) and, optionally, its Umbral verifying
  key (providers sign kfrags with it). Consumers, auditors and executors all
  receive re-encrypted keys under the registered key.
* ``GRANT_ACCESS`` (20): the asset's provider answers a pending request
  before its deadline with a threshold m, n distinct proxies (bonded,
  unjailed validators, ``1 <= m <= n <= MAX_GRANT_PROXIES``), one sealed
  kfrag per proxy and the wrapped asset key (capsule + ciphertext). The
  receiving key is the consumer's registered key and the delegating and
  verifying keys are the provider's registered keys, copied into the grant.
  Refused for an inactive or revoked asset. The request becomes
  ``ACCESS_DELIVERING``.
* ``PUBLISH_CFRAG`` (21): a proxy named in the grant posts its signed cfrag
  (``pre.keywrap`` format, context = request id) before the deadline while
  the asset is not revoked. The rule checks the proxy's signature, the
  context, capsule and the three keys against the grant, then
  ``CapsuleFrag.verify``. A valid cfrag is recorded (one per proxy); with the
  m-th valid cfrag the access settles in the same rule (the provider is paid
  exactly ``price``, the rest of the escrow is burned or recycled as in
  ``SETTLE_ACCESS``). A correctly signed cfrag for this grant that fails
  verification is evidence: the proxy validator is slashed by
  ``slash_bad_cfrag_ppm`` and jailed, and the transaction succeeds with that
  outcome (result ``b"slashed"``), so every validator agrees on it.
* ``REVOKE_ASSET`` (22): the provider stops every further request, grant and
  capsule fragment for the asset at once. Pending requests can still be
  failed (refunded); the stake stays locked as ``RETIRE_ASSET`` says, so
  disputes on delivered grants remain possible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import umbral_pre

from ledger import schema
from ledger import tx as t
from ledger.errors import ReceiptCode, RuleError
from ledger.records import (
    ACCESS_DELIVERING,
    ACCESS_PENDING,
    Access,
    Asset,
    GrantRecord,
    PreKeyRecord,
    Validator,
)
from ledger.rules import Env, _slash_validator, process_access_payment
from ledger.state import State

MAX_GRANT_PROXIES = 16
MAX_SEALED_KFRAG_SIZE = 1024
SLASHED_RESULT = b"slashed"


def _fail(code: ReceiptCode, reason: str) -> RuleError:
    return RuleError(code, reason)


def is_umbral_public_key(raw: bytes) -> bool:
    """Return True iff ``raw`` is a 33-byte compressed Umbral (secp256k1) public key."""
    if not isinstance(raw, bytes) or len(raw) != t.UMBRAL_KEY_SIZE:
        return False
    try:
        umbral_pre.PublicKey.from_compressed_bytes(raw)
    except (ValueError, TypeError):
        return False
    return True


def get_pre_key(state: State, account: bytes) -> PreKeyRecord | None:
    """Return the account's registered PRE key record, or None."""
    value: PreKeyRecord | None = state.get(schema.pre_key_key(account))
    return value


def is_asset_revoked(state: State, asset_id: bytes) -> bool:
    """Return True iff the provider revoked ``asset_id``."""
    return state.get(schema.revoked_key(asset_id)) is not None


def process_register_pre_key(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record the sender's Umbral public key (and verifying key, if given); replaces any."""
    args: t.RegisterPreKey = tx.args
    if not is_umbral_public_key(args.umbral_key):
        raise _fail(
            ReceiptCode.BAD_PARAMETER, "umbral_key must be a 33-byte compressed Umbral public key"
        )
    if args.verifying_key and not is_umbral_public_key(args.verifying_key):
        raise _fail(
            ReceiptCode.BAD_PARAMETER,
            "verifying_key must be empty or a 33-byte compressed Umbral public key",
        )
    record = PreKeyRecord(args.umbral_key, args.verifying_key, env.height)
    state.put(schema.pre_key_key(tx.sender), record)
    return b""


def _get_capsule(wrapped_key: bytes) -> bytes:
    from pre.keywrap import KeyWrapError, WrappedKey

    try:
        wrapped = WrappedKey.from_bytes(wrapped_key)
        umbral_pre.Capsule.from_bytes(wrapped.capsule)
    except (KeyWrapError, ValueError, TypeError) as exc:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"wrapped key is malformed: {exc}") from exc
    if not wrapped.ciphertext:
        raise _fail(ReceiptCode.BAD_PARAMETER, "wrapped key has an empty ciphertext")
    return wrapped.capsule


def _check_proxies(state: State, proxies: list[Any], kfrags: list[Any], threshold: int) -> None:
    n = len(proxies)
    if not 1 <= threshold <= n <= MAX_GRANT_PROXIES:
        raise _fail(
            ReceiptCode.BAD_PARAMETER,
            f"threshold must satisfy 1 <= m <= n <= {MAX_GRANT_PROXIES}; got m={threshold}, n={n}",
        )
    if len(kfrags) != n:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"{len(kfrags)} kfrags for {n} proxies")
    for proxy in proxies:
        if not isinstance(proxy, bytes) or len(proxy) != t.KEY_SIZE:
            raise _fail(ReceiptCode.BAD_PARAMETER, "each proxy must be a 32-byte validator key")
    if len(set(proxies)) != n:
        raise _fail(ReceiptCode.BAD_PARAMETER, "proxies must be distinct")
    for kfrag in kfrags:
        if not isinstance(kfrag, bytes) or not 0 < len(kfrag) <= MAX_SEALED_KFRAG_SIZE:
            raise _fail(
                ReceiptCode.BAD_PARAMETER,
                f"each sealed kfrag must be 1..{MAX_SEALED_KFRAG_SIZE} bytes",
            )
    for proxy in proxies:
        val: Validator | None = state.get(schema.validator_key(proxy))
        if val is None:
            raise _fail(ReceiptCode.BAD_PARAMETER, f"proxy {proxy.hex()[:16]} is not a validator")
        if val.stake == 0 or val.jailed or val.tombstoned:
            raise _fail(
                ReceiptCode.INVALID_STATE,
                f"proxy {proxy.hex()[:16]} is not a bonded, unjailed validator",
            )


def process_grant_access(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record the provider's m-of-n grant for a pending request (see module docstring)."""
    args: t.GrantAccess = tx.args
    request: Access | None = state.get(schema.access_key(args.request_id))
    if request is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such access request")
    if request.provider != tx.sender:
        raise _fail(ReceiptCode.UNAUTHORIZED, "only the asset's provider may grant access")
    if request.status != ACCESS_PENDING:
        raise _fail(ReceiptCode.INVALID_STATE, "access request is not pending")
    if env.height > request.deadline:
        raise _fail(ReceiptCode.INVALID_STATE, f"request deadline {request.deadline} has passed")
    asset: Asset | None = state.get(schema.asset_key(request.asset_id))
    if asset is None:
        raise _fail(ReceiptCode.NOT_FOUND, "the requested asset no longer exists")
    if is_asset_revoked(state, request.asset_id):
        raise _fail(ReceiptCode.INVALID_STATE, "the asset has been revoked")
    if not asset.active:
        raise _fail(ReceiptCode.INVALID_STATE, "asset is not active")
    provider_key = get_pre_key(state, tx.sender)
    if provider_key is None or not provider_key.verifying_key:
        raise _fail(
            ReceiptCode.INVALID_STATE,
            "the provider has registered no PRE key with a verifying key",
        )
    consumer_key = get_pre_key(state, request.consumer)
    if consumer_key is None:
        raise _fail(ReceiptCode.INVALID_STATE, "the consumer has registered no PRE key")
    _check_proxies(state, args.proxies, args.kfrags, args.threshold)
    capsule = _get_capsule(args.wrapped_key)
    grant = GrantRecord(
        request.asset_id,
        request.consumer,
        request.provider,
        args.threshold,
        list(args.proxies),
        list(args.kfrags),
        args.wrapped_key,
        capsule,
        provider_key.umbral_key,
        provider_key.verifying_key,
        consumer_key.umbral_key,
        env.height,
        request.deadline,
        [],
        [],
    )
    state.put(schema.grant_key(args.request_id), grant)
    for proxy in args.proxies:
        state.put(schema.proxy_grant_key(proxy, env.height, args.request_id), request.asset_id)
    state.put(schema.access_key(args.request_id), request._replace(status=ACCESS_DELIVERING))
    return args.request_id


def _get_cfrag_fields(grant: GrantRecord, request_id: bytes, sender: bytes, data: bytes) -> Any:
    from pre.keywrap import KeyWrapError, get_signed_cfrag

    try:
        fields = get_signed_cfrag(data)
    except KeyWrapError as exc:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"signed cfrag refused: {exc}") from exc
    if fields["proxy"] != sender:
        raise _fail(ReceiptCode.UNAUTHORIZED, "the cfrag is signed by another key than the sender")
    expected = {
        "context": request_id,
        "capsule": grant.capsule,
        "verifying_pk": grant.verifying_pk,
        "delegating_pk": grant.delegating_pk,
        "receiving_pk": grant.receiving_pk,
    }
    for name, value in expected.items():
        if fields[name] != value:
            raise _fail(ReceiptCode.BAD_PARAMETER, f"the cfrag's {name} is not the grant's")
    return fields


def process_publish_cfrag(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record a proxy's valid cfrag (settling at m), or slash it for a wrong one."""
    from pre.keywrap import get_cfrag_verification_error

    args: t.PublishCfrag = tx.args
    grant: GrantRecord | None = state.get(schema.grant_key(args.request_id))
    if grant is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no grant for this access request")
    if tx.sender not in grant.proxies:
        raise _fail(ReceiptCode.UNAUTHORIZED, "sender is not a proxy named in the grant")
    request: Access | None = state.get(schema.access_key(args.request_id))
    if request is None or request.status != ACCESS_DELIVERING:
        raise _fail(ReceiptCode.INVALID_STATE, "the grant is no longer awaiting delivery")
    if env.height > grant.deadline:
        raise _fail(ReceiptCode.INVALID_STATE, f"grant deadline {grant.deadline} has passed")
    if is_asset_revoked(state, grant.asset_id):
        raise _fail(ReceiptCode.INVALID_STATE, "the asset has been revoked")
    if tx.sender in grant.cfrag_proxies or tx.sender in grant.slashed_proxies:
        raise _fail(ReceiptCode.INVALID_STATE, "this proxy already published for this grant")
    fields = _get_cfrag_fields(grant, args.request_id, tx.sender, args.signed_cfrag)
    gkey = schema.grant_key(args.request_id)
    error = get_cfrag_verification_error(fields)
    if error is not None:
        val: Validator | None = state.get(schema.validator_key(tx.sender))
        if val is not None and not val.tombstoned:
            fraction = state.get_params().slash_bad_cfrag_ppm
            _slash_validator(state, tx.sender, fraction, tombstone=False)
        state.put(gkey, grant._replace(slashed_proxies=[*grant.slashed_proxies, tx.sender]))
        state.put(schema.cfrag_key(args.request_id, tx.sender), args.signed_cfrag)
        return SLASHED_RESULT
    published = [*grant.cfrag_proxies, tx.sender]
    state.put(gkey, grant._replace(cfrag_proxies=published))
    state.put(schema.cfrag_key(args.request_id, tx.sender), args.signed_cfrag)
    if len(published) >= grant.threshold:
        process_access_payment(state, args.request_id, request, env.height)
    return b""


def process_revoke_asset(state: State, tx: t.Tx, env: Env) -> bytes:
    """Revoke an asset: no further requests, grants or cfrags; the stake stays locked."""
    args: t.RevokeAsset = tx.args
    akey = schema.asset_key(args.asset_id)
    asset: Asset | None = state.get(akey)
    if asset is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such asset")
    if asset.provider != tx.sender:
        raise _fail(ReceiptCode.UNAUTHORIZED, "only the provider may revoke an asset")
    if is_asset_revoked(state, args.asset_id):
        raise _fail(ReceiptCode.INVALID_STATE, "asset already revoked")
    state.put(schema.revoked_key(args.asset_id), env.height)
    state.put(akey, asset._replace(active=False))
    return b""


DATA_RULES: dict[t.TxKind, Callable[[State, t.Tx, Env], bytes]] = {
    t.TxKind.REGISTER_PRE_KEY: process_register_pre_key,
    t.TxKind.GRANT_ACCESS: process_grant_access,
    t.TxKind.PUBLISH_CFRAG: process_publish_cfrag,
    t.TxKind.REVOKE_ASSET: process_revoke_asset,
}
