"""Shared pieces of the ``dmchain kyc``, ``audit`` and ``governance`` commands.

Keys: an account is given by ``--wallet DIR`` (a ``dmchain wallet new``
directory: its account seed and Umbral key), ``--key-file FILE`` (one line of
hex: the 32-byte Ed25519 seed) or ``--seed-hex HEX``. Without a wallet the
account's Umbral key (the auditor's receiving key) is derived from the seed
(:func:`compute_account_umbral_key`), so a key file is all an auditor keeps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import umbral_pre

from consensus.crypto import compute_hash_parts
from ledger.tx import TxKind
from node.client import ClientError, Signer
from node.kyc_client import KycClient

UMBRAL_LABEL = b"dmchain/account/umbral/v1"
DEFAULT_NODE = "http://127.0.0.1:26700"


class CommandError(RuntimeError):
    """A command cannot go on; the message is printed as the error."""


def add_node_argument(parser: argparse.ArgumentParser) -> None:
    """Register ``--node`` and ``--timeout``."""
    parser.add_argument("--node", default=DEFAULT_NODE, help="node API URL")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait")


def add_key_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Register the signing account: ``--key-file`` or ``--seed-hex``."""
    key = parser.add_mutually_exclusive_group(required=required)
    key.add_argument("--wallet", type=Path, help="wallet directory (dmchain wallet new)")
    key.add_argument("--key-file", type=Path, help="file holding the account's seed (hex)")
    key.add_argument("--seed-hex", help="the account's 32-byte seed as hex")


def _load_wallet(path: Path) -> Any:
    from node.wallet import WalletError, load_wallet

    try:
        return load_wallet(path)
    except WalletError as exc:
        raise CommandError(str(exc)) from exc


def get_seed(args: argparse.Namespace) -> bytes:
    """Return the signing seed from ``--wallet`` / ``--key-file`` / ``--seed-hex``."""
    if getattr(args, "wallet", None) is not None:
        seed: bytes = _load_wallet(args.wallet).seed
        return seed
    if args.key_file is None and args.seed_hex is None:
        raise CommandError("give the account: --wallet DIR, --key-file FILE or --seed-hex HEX")
    try:
        text = args.key_file.read_text().strip() if args.key_file else args.seed_hex
        seed = bytes.fromhex(text or "")
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read the account seed: {exc}") from exc
    if len(seed) != 32:
        raise CommandError("an account seed is 32 bytes (64 hex characters)")
    return seed


def compute_account_umbral_key(seed: bytes) -> umbral_pre.SecretKey:
    """Return the account's Umbral secret key, derived from its Ed25519 seed (deterministic)."""
    material = compute_hash_parts(UMBRAL_LABEL, seed)
    return umbral_pre.SecretKeyFactory.from_secure_randomness(material).make_key(UMBRAL_LABEL)


def get_umbral_secret_key(args: argparse.Namespace, seed: bytes) -> umbral_pre.SecretKey:
    """Return the account's Umbral secret key: the wallet's, else derived from the seed."""
    if getattr(args, "wallet", None) is not None:
        key: umbral_pre.SecretKey = _load_wallet(args.wallet).get_umbral_secret_key()
        return key
    return compute_account_umbral_key(seed)


def parse_hex32(value: str, what: str) -> bytes:
    """Return 32 bytes from hex; CommandError naming ``what`` if it is not."""
    try:
        raw = bytes.fromhex(value)
    except ValueError as exc:
        raise CommandError(f"{what} must be hex") from exc
    if len(raw) != 32:
        raise CommandError(f"{what} must be 32 bytes (64 hex characters)")
    return raw


def get_signer(client: KycClient, seed: bytes) -> Signer:
    """Return a signer for ``seed`` with the chain id and next nonce as the node sees them."""
    signer = Signer(seed, client.get_status()["chain_id"])
    signer.nonce = client.get_account(signer.public_key)["nonce"]
    return signer


def process_submit_and_wait(
    client: KycClient, raw: bytes, timeout: float, *, via_kyc_audit: bool = False
) -> dict[str, Any]:
    """Submit ``raw`` and wait until it is confirmed; CommandError if refused or failed."""
    try:
        tx_hash = client.kyc_audit(raw) if via_kyc_audit else client.submit(raw)
        doc = client.wait(tx_hash, "confirmed", timeout)
    except ClientError as exc:
        raise CommandError(str(exc)) from exc
    if doc.get("status") == "failed":
        raise CommandError(f"transaction {tx_hash.hex()} failed: {doc.get('reason', '')}")
    if doc.get("status") not in ("confirmed", "settled"):
        raise CommandError(f"transaction {tx_hash.hex()} not confirmed in {timeout:.0f} s: {doc}")
    return doc


def process_sign_submit(
    client: KycClient, seed: bytes, kind: TxKind, payload: list[Any], timeout: float
) -> dict[str, Any]:
    """Sign ``payload`` with ``seed``'s next nonce, submit, wait until confirmed."""
    raw = get_signer(client, seed).sign(kind, payload)
    return process_submit_and_wait(client, raw, timeout)


def load_governance_seeds(path: Path) -> list[bytes]:
    """Return the governance seeds of a testnet's governance.json."""
    try:
        doc = json.loads(path.read_text())
        seeds = [bytes.fromhex(s) for s in doc["governance"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"{path}: not a governance key file: {exc}") from exc
    if not seeds or any(len(s) != 32 for s in seeds):
        raise CommandError(f"{path}: governance seeds must be 32-byte hex strings")
    return seeds


def wait_for(predicate: Any, timeout: float, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes (then None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
