"""Stateful rules: one ``process_*`` function per transaction kind.

Each rule reads and writes through :class:`ledger.state.State` inside the
transaction scope opened by :func:`ledger.apply.apply_tx`; it either returns
(success: the result id, or ``b""``) or raises :class:`RuleError`, in which
case every write it made is dropped. Token math is integer base units.

Access pricing (reconciling beta with the paper's payment): at request time
the price is ``alpha * q * V`` = ``alpha_per_kb * quality_ppm * size_bytes //
(1_000 * 1_000_000)`` base units (1 KB = 1,000 bytes, rounded down), and
``request_access`` locks ``escrow = max(beta, price)``. ``settle_access`` pays
the provider exactly ``price`` and burns (policy "burn") or moves to the fee
pool (policy "recycle") the remainder ``escrow - price``; ``fail_access``
refunds the whole escrow. Table 2: q = 0.90, alpha = 0.05 token/KB,
V = 1,000 KB gives price 45 tokens, escrow 45 tokens.

Who may settle or fail: delivery settles a request by itself once the
proxies named in the provider's grant publish the threshold of valid
capsule fragments (:mod:`ledger.rules_data`, ``PUBLISH_CFRAG``). The
consumer may also settle (acknowledge delivery) early; the provider cannot
claim payment without delivery. The consumer's remedy against bad delivery
is ``dispute``. The provider may fail (decline) a pending or granted request
at any time; the consumer may fail it only after its deadline
(``height > deadline``), when fewer than the threshold of fragments came.

Disputes: the grant's consumer submits a proof; the verifier (default
``pre.dispute.get_dispute_error``, injectable through :class:`RuleContext`)
must accept it against the asset's commitment and content hash. Then
``rho_ppm * asset.stake // 1e6`` is slashed from the asset's stake and burned,
the grant is marked disputed (one dispute per grant), and an asset whose stake
falls below ``min_asset_stake`` stops accepting requests. ``retire_asset``
returns the stake once nothing is pending and ``unbonding_period`` blocks have
passed since the last settlement (the window for a guaranteed dispute).

Validators are keyed by consensus public key; bond/unbond/jail changes are
recorded in ``state.changed_validators`` for the consensus layer. Unbonded
stake matures ``unbonding_period`` blocks later (at the start of that block)
into the operator's balance. Stake still in the unbonding queue is slashed
with the bonded stake (Cosmos semantics), so unbonding cannot dodge evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from consensus import codec
from consensus.crypto import is_valid_signature
from consensus.evidence import Evidence, get_evidence_error

from ledger import schema
from ledger import tx as t
from ledger.errors import ReceiptCode, RuleError
from ledger.genesis import BYTES_PER_KB, PPM, ROLES, Params, get_params_error
from ledger.records import (
    ACCESS_DELIVERING,
    ACCESS_DISPUTED,
    ACCESS_FAILED,
    ACCESS_GRANTED,
    ACCESS_PENDING,
    Access,
    Asset,
    AuditLogEntry,
    AuditRequestRecord,
    KeySetRecord,
    Kyc,
    Validator,
)
from ledger.state import State

QUALITY_DOMAIN = "dmchain/quality/v1"
GOVERNANCE_DOMAIN = "dmchain/governance/v1"
MAX_UNBONDING_PER_HEIGHT = 100_000
MAX_UNBONDING_HEIGHTS = 32  # distinct pending maturities per validator

DisputeVerifier = Callable[[bytes, bytes, bytes], "str | None"]


def _default_dispute_verifier(proof: bytes, commitment: bytes, content_hash: bytes) -> str | None:
    from pre.dispute import get_dispute_error

    result: str | None = get_dispute_error(proof, commitment, content_hash)
    return result


@dataclass(frozen=True, slots=True)
class RuleContext:
    """Pluggable collaborators of the rules (tests inject their own)."""

    dispute_verifier: DisputeVerifier = _default_dispute_verifier


@dataclass(frozen=True, slots=True)
class Env:
    """What a rule may know besides the state: the block height, chain and context."""

    height: int
    chain_id: str
    ctx: RuleContext


def _fail(code: ReceiptCode, reason: str) -> RuleError:
    return RuleError(code, reason)


# -- token movements ----------------------------------------------------------


def _change_balance(state: State, account: bytes, delta: int) -> None:
    key = schema.ACCOUNT + account
    acct = state.get_account(account)
    balance = acct.balance + delta
    if balance < 0:
        raise _fail(
            ReceiptCode.INSUFFICIENT_FUNDS,
            f"balance {acct.balance} is less than the {-delta} base units needed",
        )
    state.put(key, acct._replace(balance=balance))


def _move_supply(state: State, **deltas: int) -> None:
    supply = state.get_supply()
    updated = supply._replace(**{k: getattr(supply, k) + v for k, v in deltas.items()})
    state.put(schema.SUPPLY_KEY, updated)


def compute_access_price(alpha_per_kb: int, quality_ppm: int, size_bytes: int) -> int:
    """Return ``alpha * q * V`` in base units (rounded down; V in KB of 1,000 bytes)."""
    return alpha_per_kb * quality_ppm * size_bytes // (BYTES_PER_KB * PPM)


def compute_slash(amount: int, fraction_ppm: int) -> int:
    """Return ``fraction * amount`` rounded down (integer ppm math)."""
    return amount * fraction_ppm // PPM


def _count_signers(message: bytes, signatures: list[list[bytes]], keyset: KeySetRecord) -> int:
    allowed = set(keyset.keys)
    seen: set[bytes] = set()
    for key, signature in signatures:
        if key in allowed and key not in seen and is_valid_signature(key, message, signature):
            seen.add(key)
    return len(seen)


def _append_audit_log(
    state: State, height: int, kind: str, actor: bytes, subject: bytes, request_id: bytes
) -> None:
    seq = state.get(schema.AUDIT_SEQ_KEY) or 0
    state.put(schema.audit_log_key(seq), AuditLogEntry(height, kind, actor, subject, request_id))
    if subject:
        state.put(schema.audit_subject_key(subject, seq), height)
    state.put(schema.AUDIT_SEQ_KEY, seq + 1)


def _require_member(state: State, account: bytes) -> KeySetRecord:
    gov: KeySetRecord = state.get(schema.GOVERNANCE_KEY)
    if account not in gov.keys:
        raise _fail(ReceiptCode.UNAUTHORIZED, "sender is not a consortium governance member")
    return gov


# -- tokens and staking -----------------------------------------------------


def process_transfer(state: State, tx: t.Tx, env: Env) -> bytes:
    """Move ``amount`` (> 0) from the sender to ``to``."""
    args: t.Transfer = tx.args
    if args.amount == 0:
        raise _fail(ReceiptCode.BAD_PARAMETER, "transfer amount must be positive")
    _change_balance(state, tx.sender, -args.amount)
    _change_balance(state, args.to, args.amount)
    return b""


def process_bond(state: State, tx: t.Tx, env: Env) -> bytes:
    """Bond stake to a validator (creating it, operated by the sender, if new)."""
    args: t.Bond = tx.args
    if args.amount == 0:
        raise _fail(ReceiptCode.BAD_PARAMETER, "bond amount must be positive")
    if any(r not in ROLES for r in args.roles) or len(set(args.roles)) != len(args.roles):
        raise _fail(ReceiptCode.BAD_PARAMETER, f"roles must be distinct values of {ROLES}")
    key = schema.validator_key(args.validator)
    val: Validator | None = state.get(key)
    if val is None:
        if not args.roles:
            raise _fail(ReceiptCode.BAD_PARAMETER, "a new validator needs at least one role")
        val = Validator(tx.sender, sorted(args.roles), 0, False, False, "", "", "", b"", [])
    else:
        if val.operator != tx.sender:
            raise _fail(ReceiptCode.UNAUTHORIZED, "only the validator's operator may bond")
        if val.tombstoned:
            raise _fail(ReceiptCode.INVALID_STATE, "validator is permanently banned")
        if args.roles:
            val = val._replace(roles=sorted(args.roles))
    _change_balance(state, tx.sender, -args.amount)
    state.put(key, val._replace(stake=val.stake + args.amount))
    _move_supply(state, balances=-args.amount, validator_stakes=args.amount)
    state.changed_validators.add(args.validator)
    return b""


def process_unbond(state: State, tx: t.Tx, env: Env) -> bytes:
    """Start unbonding: the stake reaches the operator ``unbonding_period`` blocks later."""
    args: t.Unbond = tx.args
    key = schema.validator_key(args.validator)
    val: Validator | None = state.get(key)
    if val is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such validator")
    if val.operator != tx.sender:
        raise _fail(ReceiptCode.UNAUTHORIZED, "only the validator's operator may unbond")
    if not 0 < args.amount <= val.stake:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"unbond amount must be in 1..{val.stake}")
    mature = env.height + max(1, state.get_params().unbonding_period)
    heights = val.unbonding_heights
    if mature not in heights:
        if len(heights) >= MAX_UNBONDING_HEIGHTS:
            raise _fail(
                ReceiptCode.INVALID_STATE,
                f"validator already has {MAX_UNBONDING_HEIGHTS} unbonding entries pending",
            )
        heights = [*heights, mature]
    state.put(key, val._replace(stake=val.stake - args.amount, unbonding_heights=heights))
    qkey = schema.unbonding_key(mature)
    entries: list[list[Any]] = list(state.get(qkey) or [])
    if len(entries) >= MAX_UNBONDING_PER_HEIGHT:
        raise _fail(ReceiptCode.INVALID_STATE, "unbonding queue for that height is full")
    entries.append([val.operator, args.validator, args.amount])
    state.put(qkey, entries)
    _move_supply(state, validator_stakes=-args.amount, unbonding=args.amount)
    state.changed_validators.add(args.validator)
    return b""


def process_unjail(state: State, tx: t.Tx, env: Env) -> bytes:
    """Unjail a jailed (not tombstoned) validator that still has stake."""
    args: t.Unjail = tx.args
    key = schema.validator_key(args.validator)
    val: Validator | None = state.get(key)
    if val is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such validator")
    if val.operator != tx.sender:
        raise _fail(ReceiptCode.UNAUTHORIZED, "only the validator's operator may unjail")
    if val.tombstoned:
        raise _fail(ReceiptCode.INVALID_STATE, "validator is permanently banned")
    if not val.jailed:
        raise _fail(ReceiptCode.INVALID_STATE, "validator is not jailed")
    if val.stake == 0:
        raise _fail(ReceiptCode.INVALID_STATE, "validator has no stake")
    state.put(key, val._replace(jailed=False))
    state.changed_validators.add(args.validator)
    return b""


def process_begin_block(state: State, height: int) -> None:
    """Release unbonding entries that mature at ``height`` to their operators."""
    qkey = schema.unbonding_key(height)
    entries = state.get(qkey)
    if not entries:
        return
    total = 0
    for operator, validator, amount in entries:
        _change_balance(state, operator, amount)
        total += amount
        vkey = schema.validator_key(validator)
        val: Validator | None = state.get(vkey)
        if val is not None and height in val.unbonding_heights:
            remaining = [h for h in val.unbonding_heights if h != height]
            state.put(vkey, val._replace(unbonding_heights=remaining))
    _move_supply(state, unbonding=-total, balances=total)
    state.put(qkey, None)


# -- data market --------------------------------------------------------------


def process_register_asset(state: State, tx: t.Tx, env: Env) -> bytes:
    """Register a data asset, locking ``stake >= s``; the asset id is the tx hash."""
    args: t.RegisterAsset = tx.args
    params = state.get_params()
    if args.stake < params.min_asset_stake:
        raise _fail(
            ReceiptCode.BAD_PARAMETER,
            f"asset stake {args.stake} is below the minimum {params.min_asset_stake}",
        )
    if args.size_bytes == 0:
        raise _fail(ReceiptCode.BAD_PARAMETER, "asset size must be positive")
    _change_balance(state, tx.sender, -args.stake)
    asset = Asset(
        tx.sender,
        args.content_hash,
        args.cipher_hash,
        args.size_bytes,
        args.metadata_hash,
        list(args.tags),
        args.licence,
        args.stake,
        args.commitment,
        params.initial_quality_ppm,
        0,
        True,
        env.height,
        0,
        env.height,
    )
    state.put(schema.asset_key(tx.tx_hash), asset)
    _move_supply(state, balances=-args.stake, asset_stakes=args.stake)
    return tx.tx_hash


def compute_quality_message(chain_id: str, asset_id: bytes, quality_ppm: int, seq: int) -> bytes:
    """Return the bytes each quality-oracle member signs for an update."""
    return codec.encode([QUALITY_DOMAIN, chain_id, asset_id, quality_ppm, seq])


def process_update_quality(state: State, tx: t.Tx, env: Env) -> bytes:
    """Set an asset's q when at least the oracle quorum signed it for a newer round."""
    args: t.UpdateQuality = tx.args
    key = schema.asset_key(args.asset_id)
    asset: Asset | None = state.get(key)
    if asset is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such asset")
    if not 0 < args.quality_ppm <= PPM:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"quality must be in (0, {PPM}] ppm")
    if args.seq <= asset.quality_seq:
        raise _fail(ReceiptCode.INVALID_STATE, f"quality round must exceed {asset.quality_seq}")
    oracle: KeySetRecord = state.get(schema.ORACLE_KEY)
    message = compute_quality_message(env.chain_id, args.asset_id, args.quality_ppm, args.seq)
    signers = _count_signers(message, args.signatures, oracle)
    if signers < oracle.threshold:
        raise _fail(
            ReceiptCode.BAD_SIGNATURES,
            f"{signers} valid oracle signatures, {oracle.threshold} needed",
        )
    state.put(key, asset._replace(quality_ppm=args.quality_ppm, quality_seq=args.seq))
    return b""


def process_request_access(state: State, tx: t.Tx, env: Env) -> bytes:
    """Lock ``max(beta, alpha*q*V)`` in escrow; the request id is the tx hash."""
    args: t.RequestAccess = tx.args
    asset: Asset | None = state.get(schema.asset_key(args.asset_id))
    if asset is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such asset")
    if not asset.active:
        raise _fail(ReceiptCode.INVALID_STATE, "asset is not active")
    if asset.provider == tx.sender:
        raise _fail(ReceiptCode.BAD_PARAMETER, "a provider cannot request its own asset")
    params = state.get_params()
    price = compute_access_price(params.alpha_per_kb, asset.quality_ppm, asset.size_bytes)
    escrow = max(params.access_beta, price)
    _change_balance(state, tx.sender, -escrow)
    request = Access(
        tx.sender,
        args.asset_id,
        asset.provider,
        escrow,
        price,
        env.height + params.access_timeout,
        ACCESS_PENDING,
        env.height,
        0,
    )
    state.put(schema.access_key(tx.tx_hash), request)
    state.put(schema.provider_request_key(asset.provider, env.height, tx.tx_hash), args.asset_id)
    state.put(schema.asset_key(args.asset_id), asset._replace(pending=asset.pending + 1))
    _move_supply(state, balances=-escrow, escrow=escrow)
    return tx.tx_hash


def _close_request(state: State, request: Access, height: int, *, settled: bool) -> None:
    akey = schema.asset_key(request.asset_id)
    asset: Asset | None = state.get(akey)
    if asset is not None:
        updated = asset._replace(pending=max(0, asset.pending - 1))
        if settled:
            updated = updated._replace(last_activity=height)
        state.put(akey, updated)


def _get_pending(state: State, request_id: bytes) -> Access:
    request: Access | None = state.get(schema.access_key(request_id))
    if request is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such access request")
    if request.status not in (ACCESS_PENDING, ACCESS_DELIVERING):
        raise _fail(ReceiptCode.INVALID_STATE, "access request is not pending")
    return request


def process_settle_access(state: State, tx: t.Tx, env: Env) -> bytes:
    """Pay the provider ``price``; burn or recycle the rest of the escrow; record the grant."""
    args: t.SettleAccess = tx.args
    request = _get_pending(state, args.request_id)
    if tx.sender != request.consumer:
        raise _fail(
            ReceiptCode.UNAUTHORIZED,
            "only the consumer may settle (acknowledge delivery); the provider is paid "
            "when the proxies publish the threshold of capsule fragments",
        )
    process_access_payment(state, args.request_id, request, env.height)
    return args.request_id


def process_access_payment(state: State, request_id: bytes, request: Access, height: int) -> None:
    """Pay the provider ``price``, burn or recycle the rest, mark the request granted."""
    remainder = request.escrow - request.price
    _change_balance(state, request.provider, request.price)
    if state.get_params().escrow_policy == "recycle":
        _move_supply(state, escrow=-request.escrow, balances=request.price, fee_pool=remainder)
    else:
        _move_supply(state, escrow=-request.escrow, balances=request.price, burned=remainder)
    state.put(
        schema.access_key(request_id),
        request._replace(status=ACCESS_GRANTED, settled_height=height),
    )
    _close_request(state, request, height, settled=True)


def process_fail_access(state: State, tx: t.Tx, env: Env) -> bytes:
    """Refund the whole escrow to the consumer (provider: any time; consumer: after deadline)."""
    args: t.FailAccess = tx.args
    request = _get_pending(state, args.request_id)
    if tx.sender == request.provider:
        pass
    elif tx.sender == request.consumer:
        if env.height <= request.deadline:
            raise _fail(
                ReceiptCode.INVALID_STATE,
                f"the consumer may fail the request only after height {request.deadline}",
            )
    else:
        raise _fail(ReceiptCode.UNAUTHORIZED, "only the consumer or provider may fail a request")
    _change_balance(state, request.consumer, request.escrow)
    _move_supply(state, escrow=-request.escrow, balances=request.escrow)
    state.put(
        schema.access_key(args.request_id),
        request._replace(status=ACCESS_FAILED, settled_height=env.height),
    )
    _close_request(state, request, env.height, settled=False)
    return b""


def process_retire_asset(state: State, tx: t.Tx, env: Env) -> bytes:
    """Return an asset's stake to its provider and deactivate it.

    Allowed once no request is pending and ``unbonding_period`` blocks have
    passed since registration or the last settlement: that period is the
    window in which a consumer is sure to find stake to slash by dispute.
    """
    args: t.RetireAsset = tx.args
    akey = schema.asset_key(args.asset_id)
    asset: Asset | None = state.get(akey)
    if asset is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such asset")
    if asset.provider != tx.sender:
        raise _fail(ReceiptCode.UNAUTHORIZED, "only the provider may retire an asset")
    if asset.pending:
        raise _fail(ReceiptCode.INVALID_STATE, f"{asset.pending} access request(s) pending")
    if asset.stake == 0 and not asset.active:
        raise _fail(ReceiptCode.INVALID_STATE, "asset already retired")
    free_at = asset.last_activity + state.get_params().unbonding_period
    if env.height < free_at:
        raise _fail(ReceiptCode.INVALID_STATE, f"the stake stays locked until height {free_at}")
    _change_balance(state, asset.provider, asset.stake)
    _move_supply(state, asset_stakes=-asset.stake, balances=asset.stake)
    state.put(akey, asset._replace(stake=0, active=False))
    return b""


def process_dispute(state: State, tx: t.Tx, env: Env) -> bytes:
    """Slash ``rho * stake`` from the asset when the consumer proves a bad delivery."""
    args: t.Dispute = tx.args
    grant: Access | None = state.get(schema.access_key(args.grant_id))
    if grant is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such access grant")
    if grant.consumer != tx.sender:
        raise _fail(ReceiptCode.UNAUTHORIZED, "only the grant's consumer may dispute it")
    if grant.status != ACCESS_GRANTED:
        raise _fail(ReceiptCode.INVALID_STATE, "only a settled, undisputed grant can be disputed")
    akey = schema.asset_key(grant.asset_id)
    asset: Asset | None = state.get(akey)
    if asset is None:
        raise _fail(ReceiptCode.NOT_FOUND, "the granted asset no longer exists")
    try:
        error = env.ctx.dispute_verifier(args.proof, asset.commitment, asset.content_hash)
    except Exception as exc:  # noqa: BLE001 - a hostile proof must never crash the node
        error = f"proof verifier failed: {type(exc).__name__}: {exc}"
    if error is not None:
        raise _fail(ReceiptCode.BAD_PROOF, f"dispute proof rejected: {error}")
    params = state.get_params()
    slash = compute_slash(asset.stake, params.rho_ppm)
    stake = asset.stake - slash
    state.put(akey, asset._replace(stake=stake, active=stake >= params.min_asset_stake))
    state.put(schema.access_key(args.grant_id), grant._replace(status=ACCESS_DISPUTED))
    _move_supply(state, asset_stakes=-slash, burned=slash)
    return b""


# -- consensus accountability ---------------------------------------------------


def _slash_validator(
    state: State, consensus_key: bytes, fraction_ppm: int, *, tombstone: bool
) -> None:
    key = schema.validator_key(consensus_key)
    val: Validator | None = state.get(key)
    if val is None:
        raise _fail(ReceiptCode.NOT_FOUND, "offender is not a validator")
    if val.tombstoned:
        raise _fail(ReceiptCode.INVALID_STATE, "validator is already permanently banned")
    slash = compute_slash(val.stake, fraction_ppm)
    state.put(
        key,
        val._replace(stake=val.stake - slash, jailed=True, tombstoned=val.tombstoned or tombstone),
    )
    unbonding_slash = 0
    for height in val.unbonding_heights:
        qkey = schema.unbonding_key(height)
        entries: list[list[Any]] = []
        for operator, validator, amount in state.get(qkey) or []:
            if validator == consensus_key:
                cut = compute_slash(amount, fraction_ppm)
                unbonding_slash += cut
                amount -= cut
            entries.append([operator, validator, amount])
        state.put(qkey, entries)
    _move_supply(
        state,
        validator_stakes=-slash,
        unbonding=-unbonding_slash,
        burned=slash + unbonding_slash,
    )
    state.changed_validators.add(consensus_key)


def process_submit_evidence(state: State, tx: t.Tx, env: Env) -> bytes:
    """Slash (double-sign fraction), jail and permanently ban an equivocating validator."""
    args: t.SubmitEvidence = tx.args
    try:
        evidence = Evidence.from_wire(args.evidence)
    except ValueError as exc:
        raise _fail(ReceiptCode.BAD_EVIDENCE, f"malformed evidence: {exc}") from exc
    error = get_evidence_error(evidence, env.chain_id)
    if error is not None:
        raise _fail(ReceiptCode.BAD_EVIDENCE, f"invalid evidence: {error}")
    ekey = schema.evidence_key(evidence.evidence_id())
    if state.get(ekey) is not None:
        raise _fail(ReceiptCode.INVALID_STATE, "evidence already processed")
    _slash_validator(
        state, evidence.offender, state.get_params().slash_double_sign_ppm, tombstone=True
    )
    state.put(ekey, env.height)
    return evidence.evidence_id()


# -- governance, KYC and audit ------------------------------------------------


def compute_governance_message(chain_id: str, action: str, args: list[Any], seq: int) -> bytes:
    """Return the bytes each governance key signs for an action."""
    return codec.encode([GOVERNANCE_DOMAIN, chain_id, action, args, seq])


def _gov_account_arg(args: list[Any]) -> bytes:
    if len(args) != 1 or not isinstance(args[0], bytes) or len(args[0]) != 32:
        raise _fail(ReceiptCode.BAD_PARAMETER, "action takes one 32-byte key")
    value: bytes = args[0]
    return value


def _set_param(state: State, args: list[Any]) -> None:
    if len(args) != 2 or not isinstance(args[0], str):
        raise _fail(ReceiptCode.BAD_PARAMETER, "set_param takes [name, value]")
    name, value = args
    params = state.get_params()
    known = {f.name: type(getattr(params, f.name)) for f in fields(Params)}
    if name not in known:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"unknown parameter {name!r}")
    if name == "epoch_length":
        raise _fail(ReceiptCode.BAD_PARAMETER, "epoch_length is fixed at genesis")
    if type(value) is not known[name]:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"parameter {name} needs a {known[name].__name__}")
    updated = replace(params, **{name: value})
    error = get_params_error(updated)
    if error is not None:
        raise _fail(ReceiptCode.BAD_PARAMETER, error)
    state.put(schema.PARAMS_KEY, updated)


def process_governance(state: State, tx: t.Tx, env: Env) -> bytes:
    """Run a governance action signed by k of the n governance keys.

    Actions: ``register_auditor [key]``, ``remove_auditor [key]``,
    ``set_param [name, value]``, ``slash_downtime [validator key]`` (downtime
    fraction, jail, no ban). ``seq`` must equal the governance counter.
    """
    args: t.Governance = tx.args
    gov: KeySetRecord = state.get(schema.GOVERNANCE_KEY)
    if args.seq != gov.seq:
        raise _fail(ReceiptCode.INVALID_STATE, f"governance sequence must be {gov.seq}")
    try:
        message = compute_governance_message(env.chain_id, args.action, args.args, args.seq)
    except codec.CodecError as exc:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"unencodable arguments: {exc}") from exc
    signers = _count_signers(message, args.signatures, gov)
    if signers < gov.threshold:
        raise _fail(
            ReceiptCode.BAD_SIGNATURES,
            f"{signers} valid governance signatures, {gov.threshold} needed",
        )
    if args.action == "register_auditor":
        account = _gov_account_arg(args.args)
        state.put(schema.auditor_key(account), env.height)
        _append_audit_log(state, env.height, "register_auditor", tx.sender, account, b"")
    elif args.action == "remove_auditor":
        account = _gov_account_arg(args.args)
        if state.get(schema.auditor_key(account)) is None:
            raise _fail(ReceiptCode.NOT_FOUND, "no such auditor")
        state.put(schema.auditor_key(account), None)
        _append_audit_log(state, env.height, "remove_auditor", tx.sender, account, b"")
    elif args.action == "set_param":
        _set_param(state, args.args)
    elif args.action == "slash_downtime":
        validator = _gov_account_arg(args.args)
        _slash_validator(state, validator, state.get_params().slash_downtime_ppm, tombstone=False)
    else:
        raise _fail(ReceiptCode.BAD_PARAMETER, f"unknown governance action {args.action!r}")
    state.put(schema.GOVERNANCE_KEY, gov._replace(seq=gov.seq + 1))
    return b""


def process_kyc_register(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record (or replace) a subject's encrypted KYC credential; members only."""
    args: t.KycRegister = tx.args
    _require_member(state, tx.sender)
    record = Kyc(args.subject, args.credential_commitment, args.capsule, tx.sender, env.height)
    state.put(schema.kyc_key(args.subject), record)
    _append_audit_log(state, env.height, "kyc_register", tx.sender, args.subject, b"")
    return b""


def process_audit_request(state: State, tx: t.Tx, env: Env) -> bytes:
    """Open an audit request by a registered auditor; the request id is the tx hash."""
    args: t.AuditRequest = tx.args
    if state.get(schema.auditor_key(tx.sender)) is None:
        raise _fail(ReceiptCode.UNAUTHORIZED, "sender is not a registered auditor")
    if state.get(schema.kyc_key(args.subject)) is None:
        raise _fail(ReceiptCode.NOT_FOUND, "subject has no KYC record")
    if not args.fields:
        raise _fail(ReceiptCode.BAD_PARAMETER, "an audit request must name at least one field")
    params = state.get_params()
    record = AuditRequestRecord(
        tx.sender,
        args.subject,
        args.order_hash,
        list(args.fields),
        args.reason,
        env.height,
        env.height + params.audit_timelock,
        env.height + params.audit_expiry,
        [],
        [],
        0,
    )
    state.put(schema.audit_request_key(tx.tx_hash), record)
    _append_audit_log(state, env.height, "audit_request", tx.sender, args.subject, tx.tx_hash)
    return tx.tx_hash


def _get_audit_request(state: State, request_id: bytes) -> AuditRequestRecord:
    record: AuditRequestRecord | None = state.get(schema.audit_request_key(request_id))
    if record is None:
        raise _fail(ReceiptCode.NOT_FOUND, "no such audit request")
    return record


def process_audit_approve(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record one governance member's approval of an unexpired audit request."""
    args: t.AuditApprove = tx.args
    _require_member(state, tx.sender)
    record = _get_audit_request(state, args.request_id)
    if env.height >= record.expiry:
        raise _fail(ReceiptCode.INVALID_STATE, "audit request has expired")
    if tx.sender in record.approvals:
        raise _fail(ReceiptCode.INVALID_STATE, "member already approved this request")
    updated = record._replace(approvals=sorted([*record.approvals, tx.sender]))
    state.put(schema.audit_request_key(args.request_id), updated)
    _append_audit_log(
        state, env.height, "audit_approve", tx.sender, record.subject, args.request_id
    )
    return b""


def process_audit_object(state: State, tx: t.Tx, env: Env) -> bytes:
    """Record a member's objection; only inside the time lock."""
    args: t.AuditObject = tx.args
    _require_member(state, tx.sender)
    record = _get_audit_request(state, args.request_id)
    if env.height >= record.timelock_end:
        raise _fail(ReceiptCode.INVALID_STATE, "the objection time lock is over")
    if tx.sender in record.objections:
        raise _fail(ReceiptCode.INVALID_STATE, "member already objected to this request")
    updated = record._replace(objections=sorted([*record.objections, tx.sender]))
    state.put(schema.audit_request_key(args.request_id), updated)
    _append_audit_log(state, env.height, "audit_object", tx.sender, record.subject, args.request_id)
    return b""


def is_audit_releasable(
    state: State, request_id: bytes, height: int, fields_wanted: list[str] | None = None
) -> tuple[bool, str]:
    """Return (True, ...) iff the credentials may be released at ``height``.

    Requires >= k governance approvals, the time lock passed with no objection,
    ``height`` before expiry, and every wanted field among the approved fields.
    """
    record: AuditRequestRecord | None = state.get(schema.audit_request_key(request_id))
    if record is None:
        return False, "no such audit request"
    if record.objections:
        return False, f"objected to by {len(record.objections)} member(s)"
    gov: KeySetRecord = state.get(schema.GOVERNANCE_KEY)
    approvals = len(set(record.approvals) & set(gov.keys))
    if approvals < gov.threshold:
        return False, f"{approvals} approvals, {gov.threshold} needed"
    if height < record.timelock_end:
        return False, f"time lock runs until height {record.timelock_end}"
    if height >= record.expiry:
        return False, f"request expired at height {record.expiry}"
    for name in fields_wanted or []:
        if name not in record.fields:
            return False, f"field {name!r} was not approved"
    return True, "releasable"


def process_audit_release(state: State, tx: t.Tx, env: Env) -> bytes:
    """Log the auditor's release of the approved fields; refused unless releasable."""
    args: t.AuditRelease = tx.args
    record = _get_audit_request(state, args.request_id)
    if record.auditor != tx.sender:
        raise _fail(ReceiptCode.UNAUTHORIZED, "only the requesting auditor may release")
    ok, reason = is_audit_releasable(state, args.request_id, env.height)
    if not ok:
        raise _fail(ReceiptCode.UNAUTHORIZED, f"audit release refused: {reason}")
    state.put(
        schema.audit_request_key(args.request_id), record._replace(releases=record.releases + 1)
    )
    _append_audit_log(
        state, env.height, "audit_release", tx.sender, record.subject, args.request_id
    )
    return b""


RULES: dict[t.TxKind, Callable[[State, t.Tx, Env], bytes]] = {
    t.TxKind.TRANSFER: process_transfer,
    t.TxKind.BOND: process_bond,
    t.TxKind.UNBOND: process_unbond,
    t.TxKind.UNJAIL: process_unjail,
    t.TxKind.REGISTER_ASSET: process_register_asset,
    t.TxKind.UPDATE_QUALITY: process_update_quality,
    t.TxKind.REQUEST_ACCESS: process_request_access,
    t.TxKind.SETTLE_ACCESS: process_settle_access,
    t.TxKind.FAIL_ACCESS: process_fail_access,
    t.TxKind.DISPUTE: process_dispute,
    t.TxKind.RETIRE_ASSET: process_retire_asset,
    t.TxKind.SUBMIT_EVIDENCE: process_submit_evidence,
    t.TxKind.GOVERNANCE: process_governance,
    t.TxKind.KYC_REGISTER: process_kyc_register,
    t.TxKind.AUDIT_REQUEST: process_audit_request,
    t.TxKind.AUDIT_APPROVE: process_audit_approve,
    t.TxKind.AUDIT_OBJECT: process_audit_object,
    t.TxKind.AUDIT_RELEASE: process_audit_release,
}
