"""KYC audit rules: auditor kfrag sets and audited cfrag publication (kinds 25-26).

``KYC_KFRAGS`` (25): the member that registered a subject (or the subject
itself) posts, for one registered auditor, the per-field kfrags of the
subject's sealed credential (:class:`pre.kyc.SealedCredential`, held in the
KYC record's ``capsule``), each sealed to one proxy and made for the auditor's
registered PRE key (REGISTER_PRE_KEY). Proxies are distinct active
validators, ``1 <= m <= n <= MAX_KFRAG_PROXIES``; a transaction names each
field of the credential at most once (names of at most ``MAX_KYC_FIELD_NAME``
characters, the bound credentials and audit requests use). Because a node admits transactions of
a few KiB only, a set may be posted in parts: a part with the same threshold,
proxies and keys as the recorded set adds (or replaces) its fields; a part
with other parameters replaces the whole set (e.g. after a re-registration).

``AUDIT_CFRAG`` (26): anyone posts a proxy's signed cfrag for one field of one
audit request. The rule requires the request to be releasable now
(:func:`ledger.rules.is_audit_releasable`: k approvals, time lock over, no
objection, not expired, field approved), the cfrag's signer to be a proxy of
the auditor's kfrag set, and the signed capsule, keys and context to be
exactly those of this request and field. The cfrag is then verified
(``CapsuleFrag.verify``, deterministic): a valid one is recorded; a correctly
signed one that fails verification is itself the evidence: the transaction
succeeds, the record is kept with ``valid=False``, and the proxy validator is
slashed (``slash_double_sign_ppm``, jailed, not banned). One cfrag per proxy,
field and request. Both kinds append an audit log entry about the subject.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger import schema
from ledger import tx as t
from ledger.errors import ReceiptCode, RuleError
from ledger.records import AuditCfragRecord, AuditRequestRecord, Kyc, KycKfragSet, Validator
from ledger.rules import Env, _append_audit_log, _slash_validator, is_audit_releasable
from ledger.rules_data import get_pre_key, is_umbral_public_key
from ledger.state import State

MAX_KFRAG_PROXIES = 16
MAX_KFRAG_FIELDS = 16
MAX_KFRAGS_PER_SET = 160  # fields * proxies: 160 sealed kfrags of ~360 bytes fit one tx
MAX_SEALED_KFRAG_SIZE = 512
CFRAG_VALID = "valid"
CFRAG_BAD = "bad"


def _fail(code: ReceiptCode, reason: str) -> RuleError:
    return RuleError(code, reason)


def _get_sealed_fields(kyc: Kyc) -> dict[str, tuple[bytes, bytes]]:
    """Return {field name: (capsule, delegating_pk)} of the record's sealed credential."""
    from pre.kyc import KycError, SealedCredential

    try:
        sealed = SealedCredential.from_bytes(kyc.capsule)
    except KycError as exc:
        raise _fail(
            ReceiptCode.INVALID_STATE, f"KYC record does not hold a sealed credential: {exc}"
        ) from exc
    return {f.name: (f.wrapped_key.capsule, f.delegating_pk) for f in sealed.fields}


def _is_active_validator(state: State, key: bytes) -> bool:
    val: Validator | None = state.get(schema.validator_key(key))
    return val is not None and val.stake > 0 and not val.jailed and not val.tombstoned


def _check_kfrag_fields(
    raw_fields: list[Any], known: dict[str, tuple[bytes, bytes]], shares: int
) -> list[list[Any]]:
    if not raw_fields or len(raw_fields) > MAX_KFRAG_FIELDS:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"a kfrag set names 1..{MAX_KFRAG_FIELDS} fields")
    if len(raw_fields) * shares > MAX_KFRAGS_PER_SET:
        raise _fail(
            ReceiptCode.BAD_PARAMETER, f"fields x proxies must be at most {MAX_KFRAGS_PER_SET}"
        )
    seen: set[str] = set()
    result: list[list[Any]] = []
    for item in raw_fields:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], str)
            or not isinstance(item[1], list)
        ):
            raise _fail(ReceiptCode.BAD_PARAMETER, "each field must be [name, [sealed kfrags]]")
        name, kfrags = item
        if not 1 <= len(name) <= t.MAX_KYC_FIELD_NAME:
            raise _fail(
                ReceiptCode.BAD_PARAMETER,
                f"field names are 1..{t.MAX_KYC_FIELD_NAME} characters, got {len(name)}",
            )
        if name not in known:
            raise _fail(ReceiptCode.BAD_PARAMETER, f"credential has no field {name!r}")
        if name in seen:
            raise _fail(ReceiptCode.BAD_PARAMETER, f"field {name!r} named twice")
        seen.add(name)
        if len(kfrags) != shares or not all(
            isinstance(k, bytes) and 0 < len(k) <= MAX_SEALED_KFRAG_SIZE for k in kfrags
        ):
            raise _fail(
                ReceiptCode.BAD_PARAMETER,
                f"field {name!r} needs one sealed kfrag (<= {MAX_SEALED_KFRAG_SIZE} bytes) "
                f"per proxy ({shares})",
            )
        result.append([name, list(kfrags)])
    return sorted(result)


def process_kyc_kfrags(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record an auditor's kfrag set for a subject; refused for a non-auditor, unknown
    subject, a sender other than the registering member or the subject, an auditor
    without a registered PRE key or kfrags for another key, a bad threshold,
    proxies that are not distinct active validators, or unknown fields."""
    args: t.KycKfrags = tx.args
    kyc: Kyc | None = state.get(schema.kyc_key(args.subject))
    if kyc is None:
        raise _fail(ReceiptCode.NOT_FOUND, "subject has no KYC record")
    if tx.sender not in (kyc.member, kyc.subject):
        raise _fail(
            ReceiptCode.UNAUTHORIZED,
            "only the member that registered the subject, or the subject, may issue kfrags",
        )
    if state.get(schema.auditor_key(args.auditor)) is None:
        raise _fail(ReceiptCode.UNAUTHORIZED, "kfrags may only be issued to a registered auditor")
    shares = len(args.proxies)
    if not 1 <= args.threshold <= shares <= MAX_KFRAG_PROXIES:
        raise _fail(
            ReceiptCode.BAD_PARAMETER,
            f"threshold must satisfy 1 <= m <= n <= {MAX_KFRAG_PROXIES}; "
            f"got m={args.threshold}, n={shares}",
        )
    if not all(isinstance(p, bytes) and len(p) == t.KEY_SIZE for p in args.proxies):
        raise _fail(ReceiptCode.BAD_PARAMETER, "proxies must be 32-byte validator keys")
    if len(set(args.proxies)) != shares:
        raise _fail(ReceiptCode.BAD_PARAMETER, "proxies must be distinct")
    for proxy in args.proxies:
        if not _is_active_validator(state, proxy):
            raise _fail(
                ReceiptCode.BAD_PARAMETER, f"proxy {proxy.hex()} is not an active validator"
            )
    if not is_umbral_public_key(args.verifying_pk):
        raise _fail(ReceiptCode.BAD_PARAMETER, "verifying key is not an Umbral public key")
    pre_key = get_pre_key(state, args.auditor)
    if pre_key is None:
        raise _fail(ReceiptCode.INVALID_STATE, "the auditor has registered no PRE (Umbral) key")
    if args.receiving_pk != pre_key.umbral_key:
        raise _fail(
            ReceiptCode.BAD_PARAMETER, "kfrags must be made for the auditor's registered PRE key"
        )
    fields = _check_kfrag_fields(args.fields, _get_sealed_fields(kyc), shares)
    key = schema.kyc_kfrags_key(args.subject, args.auditor)
    previous: KycKfragSet | None = state.get(key)
    if previous is not None and (
        previous.threshold,
        previous.proxies,
        previous.verifying_pk,
        previous.receiving_pk,
    ) == (args.threshold, list(args.proxies), args.verifying_pk, args.receiving_pk):
        merged: dict[str, Any] = dict(previous.fields)
        merged.update(dict(fields))
        fields = sorted([name, kfrags] for name, kfrags in merged.items())
    record = KycKfragSet(
        args.subject,
        args.auditor,
        tx.sender,
        args.threshold,
        args.verifying_pk,
        args.receiving_pk,
        list(args.proxies),
        fields,
        env.height,
    )
    state.put(key, record)
    _append_audit_log(state, env.height, "kyc_kfrags", tx.sender, args.subject, b"")
    return b""


def compute_cfrag_outcome(
    signed_cfrag: bytes,
    capsule: bytes,
    verifying_pk: bytes,
    delegating_pk: bytes,
    receiving_pk: bytes,
    context: bytes,
    proxies: list[bytes],
) -> tuple[str, bytes, str]:
    """Return (outcome, proxy, reason) for a posted signed cfrag (deterministic).

    outcome is ``valid`` (verifies for exactly these keys and context), ``bad``
    (correctly signed for them by an allowed proxy but fails verification: the
    evidence) or ``""`` (refused: ``reason`` says why; ``proxy`` may be empty).
    """
    import umbral_pre
    from pre.keywrap import KeyWrapError, get_cfrag_check, get_signed_cfrag

    try:
        fields = get_signed_cfrag(signed_cfrag)
        verifying, delegating, receiving = (
            umbral_pre.PublicKey.from_compressed_bytes(k)
            for k in (verifying_pk, delegating_pk, receiving_pk)
        )
        check = get_cfrag_check(
            [signed_cfrag], capsule, verifying, delegating, receiving, context, proxies
        )
    except (KeyWrapError, ValueError, TypeError) as exc:
        return "", b"", f"signed cfrag refused: {exc}"
    proxy: bytes = fields["proxy"]
    if check.valid:
        return CFRAG_VALID, proxy, "cfrag verifies"
    if check.evidence:
        return CFRAG_BAD, proxy, check.rejected[0] if check.rejected else "cfrag fails"
    return "", proxy, check.rejected[0] if check.rejected else "signed cfrag refused"


def process_audit_cfrag(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record a proxy's verified cfrag for one approved field of a releasable request,
    or slash the proxy whose correctly signed cfrag fails verification."""
    args: t.AuditCfrag = tx.args
    record: AuditRequestRecord | None = state.get(schema.audit_request_key(args.request_id))
    if record is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such audit request")
    ok, reason = is_audit_releasable(state, args.request_id, env.height, [args.field])
    if not ok:
        raise _fail(ReceiptCode.UNAUTHORIZED, f"audit release refused: {reason}")
    if state.get(schema.auditor_key(record.auditor)) is None:
        raise _fail(ReceiptCode.UNAUTHORIZED, "audit release refused: auditor is not registered")
    kyc: Kyc | None = state.get(schema.kyc_key(record.subject))
    if kyc is None:
        raise _fail(ReceiptCode.NOT_FOUND, "subject has no KYC record")
    kfrags: KycKfragSet | None = state.get(schema.kyc_kfrags_key(record.subject, record.auditor))
    if kfrags is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no kfrags were issued to this auditor")
    sealed = _get_sealed_fields(kyc)
    if args.field not in sealed or args.field not in {f[0] for f in kfrags.fields}:
        raise _fail(ReceiptCode.NOT_FOUND, f"no kfrags for field {args.field!r}")
    capsule, delegating_pk = sealed[args.field]
    from pre.kyc import compute_audit_context

    outcome, proxy, why = compute_cfrag_outcome(
        args.signed_cfrag,
        capsule,
        kfrags.verifying_pk,
        delegating_pk,
        kfrags.receiving_pk,
        compute_audit_context(args.request_id, args.field),
        kfrags.proxies,
    )
    if not outcome:
        raise _fail(ReceiptCode.BAD_PROOF, why)
    key = schema.audit_cfrag_key(args.request_id, proxy, args.field)
    if state.get(key) is not None:
        raise _fail(ReceiptCode.INVALID_STATE, "this proxy already posted a cfrag for that field")
    valid = outcome == CFRAG_VALID
    state.put(
        key,
        AuditCfragRecord(args.request_id, args.field, proxy, args.signed_cfrag, valid, env.height),
    )
    if not valid:
        _slash_validator(state, proxy, state.get_params().slash_double_sign_ppm, tombstone=False)
    kind = "audit_cfrag" if valid else "audit_cfrag_slash"
    _append_audit_log(state, env.height, kind, proxy, record.subject, args.request_id)
    return proxy


KYC_RULES: dict[t.TxKind, Callable[[State, t.Tx, Env], bytes]] = {
    t.TxKind.KYC_KFRAGS: process_kyc_kfrags,
    t.TxKind.AUDIT_CFRAG: process_audit_cfrag,
}
