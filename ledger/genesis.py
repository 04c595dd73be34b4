"""Genesis: parameters, initial balances, validators and key sets.

Units: 1 token = :data:`TOKEN` = 10^6 base units; every amount is an integer
number of base units. Fractions (q, rho, slash fractions) are fixed-point
parts per million (:data:`PPM`). ``alpha_per_kb`` is in base units per KB
with 1 KB = 1,000 bytes. Durations are counted in block heights.

The JSON file holds ``chain_id``, ``params`` (any subset of :class:`Params`;
the rest take Table 2 defaults), ``balances`` (hex account -> base units),
``validators`` (name, consensus_key, roles, stake, operator, peer_id,
multiaddr, umbral_key), ``governance`` and ``oracle`` (``threshold`` k and
hex ``keys``), and optional ``auditors``. :func:`load_genesis` reports the
first bad field by name.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from consensus import codec
from consensus.crypto import compute_hash

from ledger.errors import GenesisError

TOKEN = 1_000_000
PPM = 1_000_000
BYTES_PER_KB = 1_000
ROLES = ("pos", "pbft")
ESCROW_POLICIES = ("burn", "recycle")
MAX_GENESIS_ACCOUNTS = 100_000
MAX_KEYSET = 64


@dataclass(frozen=True, slots=True)
class Params:
    """Chain parameters (integers; ``escrow_policy`` is "burn" or "recycle")."""

    min_asset_stake: int = 100 * TOKEN  # s
    access_beta: int = 1 * TOKEN  # beta
    alpha_per_kb: int = 50_000  # alpha = 0.05 token / KB
    rho_ppm: int = 500_000  # rho = 0.5
    unbonding_period: int = 100
    slash_double_sign_ppm: int = 50_000
    slash_downtime_ppm: int = 10_000
    epoch_length: int = 100
    min_fee: int = 0
    access_timeout: int = 50
    initial_quality_ppm: int = 500_000
    audit_timelock: int = 10
    audit_expiry: int = 1_000
    escrow_policy: str = "burn"
    # -- data access --
    slash_bad_cfrag_ppm: int = 100_000  # a proxy validator that publishes a wrong cfrag
    # -- training jobs --
    min_executor_stake: int = 10 * TOKEN  # stake an executor locks to be assigned jobs
    job_replication: int = 2  # k: executors first assigned to a job
    job_agreement: int = 2  # t: identical results needed to accept a job's result
    job_max_executors: int = 8  # cap when disagreement doubles the assigned set
    job_timeout: int = 600  # blocks until an unaccepted job may be expired (refund)
    slash_executor_ppm: int = 500_000  # share of an outvoted executor's stake burned
    job_executor_share_ppm: int = 300_000  # executors' part of the bid (D2M 30/70)
    job_fixed_share_ppm: int = 200_000  # fixed participation part of the data part

    def to_wire(self) -> dict[str, Any]:
        """Return the parameters as a codec/JSON-encodable dict."""
        return asdict(self)

    @staticmethod
    def from_wire(value: Any) -> Params:
        """Parse a (possibly partial) parameter dict; raises GenesisError per bad field."""
        if not isinstance(value, dict):
            raise GenesisError("params must be an object")
        known = {f.name for f in fields(Params)}
        for name in value:
            if name not in known:
                raise GenesisError(f"params.{name}: unknown parameter")
        params = Params(**value)
        error = get_params_error(params)
        if error:
            raise GenesisError(error)
        return params


def get_params_error(params: Params) -> str | None:
    """Return None if every parameter is in range, else a message naming the field."""
    for f in fields(params):
        value = getattr(params, f.name)
        if f.name == "escrow_policy":
            if value not in ESCROW_POLICIES:
                return f"params.escrow_policy: must be one of {ESCROW_POLICIES}"
            continue
        if type(value) is not int or value < 0:
            return f"params.{f.name}: must be a non-negative integer"
    for name in ("rho_ppm", "slash_double_sign_ppm", "slash_downtime_ppm", "slash_bad_cfrag_ppm"):
        if getattr(params, name) > PPM:
            return f"params.{name}: must be at most {PPM}"
    if not 0 < params.initial_quality_ppm <= PPM:
        return f"params.initial_quality_ppm: must be in (0, {PPM}]"
    if params.epoch_length < 1:
        return "params.epoch_length: must be at least 1"
    if params.access_timeout < 1:
        return "params.access_timeout: must be at least 1"
    if params.audit_expiry <= params.audit_timelock:
        return "params.audit_expiry: must exceed audit_timelock"
    # -- training jobs --
    for name in ("slash_executor_ppm", "job_executor_share_ppm", "job_fixed_share_ppm"):
        if getattr(params, name) > PPM:
            return f"params.{name}: must be at most {PPM}"
    if not 1 <= params.job_agreement <= params.job_replication <= params.job_max_executors:
        return (
            "params.job_agreement: need 1 <= job_agreement <= job_replication"
            " <= job_max_executors"
        )
    if params.job_max_executors > 32:
        return "params.job_max_executors: must be at most 32"
    if params.job_timeout < 1:
        return "params.job_timeout: must be at least 1"
    return None


@dataclass(frozen=True, slots=True)
class KeySet:
    """A k-of-n set of Ed25519 public keys (governance or quality oracle)."""

    threshold: int
    keys: tuple[bytes, ...]

    def to_wire(self) -> list[Any]:
        """Return a codec-encodable list."""
        return [self.threshold, list(self.keys)]


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    """A validator in genesis, with what the node needs to reach it."""

    name: str
    consensus_key: bytes
    roles: tuple[str, ...]
    stake: int
    operator: bytes
    peer_id: str
    multiaddr: str
    umbral_key: bytes


@dataclass(frozen=True, slots=True)
class Genesis:
    """A validated genesis."""

    chain_id: str
    params: Params
    balances: dict[bytes, int]
    validators: tuple[GenesisValidator, ...]
    governance: KeySet
    oracle: KeySet
    auditors: tuple[bytes, ...]

    def total_supply(self) -> int:
        """Return the genesis supply: every balance plus every validator stake."""
        return sum(self.balances.values()) + sum(v.stake for v in self.validators)

    def genesis_hash(self) -> bytes:
        """Return the hash of the canonical genesis (the parent of block 1)."""
        return compute_hash(codec.encode(genesis_to_json(self)))


def _hex(value: Any, where: str, size: int | None = 32) -> bytes:
    if not isinstance(value, str):
        raise GenesisError(f"{where}: must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise GenesisError(f"{where}: not valid hex") from exc
    if size is not None and len(raw) != size:
        raise GenesisError(f"{where}: must be {size} bytes, got {len(raw)}")
    return raw


def _amount(value: Any, where: str) -> int:
    if type(value) is not int or value < 0:
        raise GenesisError(f"{where}: must be a non-negative integer (base units)")
    return value


def _keyset(value: Any, where: str) -> KeySet:
    if not isinstance(value, dict):
        raise GenesisError(f"{where}: must be an object with threshold and keys")
    keys_raw = value.get("keys")
    if not isinstance(keys_raw, list) or not 1 <= len(keys_raw) <= MAX_KEYSET:
        raise GenesisError(f"{where}.keys: must be a list of 1..{MAX_KEYSET} hex keys")
    keys = tuple(_hex(k, f"{where}.keys[{i}]") for i, k in enumerate(keys_raw))
    if len(set(keys)) != len(keys):
        raise GenesisError(f"{where}.keys: duplicate key")
    threshold = value.get("threshold")
    if type(threshold) is not int or not 1 <= threshold <= len(keys):
        raise GenesisError(f"{where}.threshold: must be an integer in 1..{len(keys)}")
    return KeySet(threshold, keys)


def _validator(value: Any, where: str) -> GenesisValidator:
    if not isinstance(value, dict):
        raise GenesisError(f"{where}: must be an object")
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise GenesisError(f"{where}.name: must be a non-empty string")
    roles = value.get("roles")
    if (
        not isinstance(roles, list)
        or not roles
        or any(r not in ROLES for r in roles)
        or len(set(roles)) != len(roles)
    ):
        raise GenesisError(f"{where}.roles: must be a non-empty subset of {ROLES}")
    for text in ("peer_id", "multiaddr"):
        if not isinstance(value.get(text, ""), str):
            raise GenesisError(f"{where}.{text}: must be a string")
    umbral = value.get("umbral_key", "")
    return GenesisValidator(
        name=name,
        consensus_key=_hex(value.get("consensus_key"), f"{where}.consensus_key"),
        roles=tuple(sorted(roles)),
        stake=_amount(value.get("stake"), f"{where}.stake"),
        operator=_hex(value.get("operator"), f"{where}.operator"),
        peer_id=value.get("peer_id", ""),
        multiaddr=value.get("multiaddr", ""),
        umbral_key=_hex(umbral, f"{where}.umbral_key", None) if umbral else b"",
    )


def parse_genesis(data: Any) -> Genesis:
    """Validate a decoded genesis JSON object; raises GenesisError naming the bad field."""
    if not isinstance(data, dict):
        raise GenesisError("genesis must be a JSON object")
    chain_id = data.get("chain_id")
    if not isinstance(chain_id, str) or not 0 < len(chain_id) <= 64:
        raise GenesisError("chain_id: must be a string of 1..64 characters")
    params = Params.from_wire(data.get("params", {}))
    balances_raw = data.get("balances", {})
    if not isinstance(balances_raw, dict) or len(balances_raw) > MAX_GENESIS_ACCOUNTS:
        raise GenesisError(f"balances: must be an object of at most {MAX_GENESIS_ACCOUNTS}")
    balances: dict[bytes, int] = {}
    for key, amount in balances_raw.items():
        balances[_hex(key, f"balances[{key!r}]")] = _amount(amount, f"balances[{key!r}]")
    validators_raw = data.get("validators", [])
    if not isinstance(validators_raw, list) or len(validators_raw) > MAX_KEYSET * 4:
        raise GenesisError("validators: must be a list")
    validators = tuple(_validator(v, f"validators[{i}]") for i, v in enumerate(validators_raw))
    if len({v.consensus_key for v in validators}) != len(validators):
        raise GenesisError("validators: duplicate consensus_key")
    auditors_raw = data.get("auditors", [])
    if not isinstance(auditors_raw, list) or len(auditors_raw) > MAX_KEYSET:
        raise GenesisError(f"auditors: must be a list of at most {MAX_KEYSET} hex keys")
    auditors = tuple(_hex(a, f"auditors[{i}]") for i, a in enumerate(auditors_raw))
    return Genesis(
        chain_id=chain_id,
        params=params,
        balances=balances,
        validators=validators,
        governance=_keyset(data.get("governance"), "governance"),
        oracle=_keyset(data.get("oracle"), "oracle"),
        auditors=auditors,
    )


def load_genesis(path: str) -> Genesis:
    """Read and validate a genesis JSON file; raises GenesisError on any problem."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise GenesisError(f"cannot read genesis file {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise GenesisError(f"genesis file {path} is not valid JSON: {exc}") from exc
    return parse_genesis(data)


def genesis_to_json(genesis: Genesis) -> dict[str, Any]:
    """Return the JSON object form of ``genesis`` (inverse of :func:`parse_genesis`)."""
    return {
        "chain_id": genesis.chain_id,
        "params": genesis.params.to_wire(),
        "balances": {k.hex(): v for k, v in sorted(genesis.balances.items())},
        "validators": [
            {
                "name": v.name,
                "consensus_key": v.consensus_key.hex(),
                "roles": list(v.roles),
                "stake": v.stake,
                "operator": v.operator.hex(),
                "peer_id": v.peer_id,
                "multiaddr": v.multiaddr,
                "umbral_key": v.umbral_key.hex(),
            }
            for v in genesis.validators
        ],
        "governance": {
            "threshold": genesis.governance.threshold,
            "keys": [k.hex() for k in genesis.governance.keys],
        },
        "oracle": {
            "threshold": genesis.oracle.threshold,
            "keys": [k.hex() for k in genesis.oracle.keys],
        },
        "auditors": [a.hex() for a in genesis.auditors],
    }


def compute_genesis_template(chain_id: str = "dmchain-local") -> dict[str, Any]:
    """Return a template genesis object with Table 2 defaults and placeholder keys.

    The node engineer replaces the zero keys, peer ids and multiaddrs.
    """
    zero = "00" * 32
    return {
        "chain_id": chain_id,
        "params": Params().to_wire(),
        "balances": {zero: 1_000_000 * TOKEN},
        "validators": [
            {
                "name": "validator-0",
                "consensus_key": "11" * 32,
                "roles": ["pbft", "pos"],
                "stake": 10_000 * TOKEN,
                "operator": zero,
                "peer_id": "",
                "multiaddr": "/ip4/127.0.0.1/tcp/7000",
                "umbral_key": "",
            }
        ],
        "governance": {"threshold": 1, "keys": [zero]},
        "oracle": {"threshold": 1, "keys": [zero]},
        "auditors": [],
    }


def write_genesis_template(path: str, chain_id: str = "dmchain-local") -> None:
    """Write :func:`compute_genesis_template` to ``path`` as indented JSON."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(compute_genesis_template(chain_id), fh, indent=2, sort_keys=True)
        fh.write("\n")
