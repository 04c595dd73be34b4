"""``dmchain kyc register|sync|events``: a member registers a subject's sealed credential.

* ``register --subject S --credential FILE.json [--vault-seed FILE]``: seals the
  credential field by field (:func:`pre.kyc.seal_credential`; the vault seed
  file is created, mode 0600, if it does not exist), registers it on chain
  (KYC_REGISTER: a salted commitment and the sealed credential), then issues
  per-field kfrags (KYC_KFRAGS) to every registered auditor that has a PRE key.
* ``sync --subject S --vault-seed FILE``: issues kfrags to every registered
  auditor that has none yet for this subject (auditors registered later).
* ``events --subject S``: prints the subject's audit log entries (its notifications).

Proxies default to the active validators (sorted by key, at most 16) and the
threshold to ``n // 2 + 1``; ``--proxies`` and ``--threshold`` override them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import umbral_pre

from ledger.rules_kyc import MAX_KFRAG_FIELDS, MAX_KFRAG_PROXIES
from ledger.tx import MAX_KYC_FIELD_NAME, TxKind
from node.client import ClientError
from node.keys import write_secret_file
from node.kyc_client import KycClient
from node.kyc_tools import (
    CommandError,
    add_key_arguments,
    add_node_argument,
    get_seed,
    parse_hex32,
    process_sign_submit,
)
from pre.keywrap import KeyWrapError, compute_umbral_public_key_bytes
from pre.kyc import (
    VAULT_SEED_SIZE,
    KycError,
    SealedCredential,
    compute_credential_commitment,
    compute_subject_signer,
    issue_auditor_kfrags,
    seal_credential,
)
from pre.randomness import generate_seed

KFRAG_TX_BUDGET = 6_500  # bytes of sealed kfrags per transaction (nodes admit 8 KiB by default)
SEALED_KFRAG_BYTES = 380  # one sealed kfrag (358 bytes) with its encoding


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the action, the subject, the credential, vault seed and proxy options."""
    parser.add_argument("action", choices=["register", "sync", "events"])
    parser.add_argument("--subject", required=True, help="subject id (32 bytes hex)")
    parser.add_argument("--credential", type=Path, help="credential JSON object (register)")
    parser.add_argument("--vault-seed", type=Path, help="the subject's vault seed file (hex)")
    parser.add_argument("--threshold", type=int, default=0, help="m of the n proxies")
    parser.add_argument("--proxies", default="", help="comma-separated proxy validator keys")
    add_key_arguments(parser, required=False)
    add_node_argument(parser)


def _load_vault_seed(path: Path | None, create: bool) -> bytes:
    if path is None:
        raise CommandError("--vault-seed FILE is required")
    if not path.exists():
        if not create:
            raise CommandError(f"{path}: no vault seed")
        write_secret_file(path, (generate_seed(VAULT_SEED_SIZE).hex() + "\n").encode())
    try:
        seed = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise CommandError(f"{path}: not a vault seed: {exc}") from exc
    if len(seed) != VAULT_SEED_SIZE:
        raise CommandError(f"{path}: a vault seed is {VAULT_SEED_SIZE} bytes")
    return seed


def get_proxies(client: KycClient, text: str, threshold: int) -> tuple[list[bytes], int]:
    """Return (proxies, threshold): the given ones, else the active validators and n//2+1."""
    if text:
        proxies = [parse_hex32(p.strip(), "proxy key") for p in text.split(",") if p.strip()]
    else:
        keys = sorted(v["public_key"] for v in client.get_validators())
        proxies = [bytes.fromhex(k) for k in keys[:MAX_KFRAG_PROXIES]]
    m = threshold or len(proxies) // 2 + 1
    if not 1 <= m <= len(proxies) <= MAX_KFRAG_PROXIES:
        raise CommandError(f"need 1 <= threshold ({m}) <= proxies ({len(proxies)}) <= 16")
    return proxies, m


def process_issue_kfrags(
    client: KycClient,
    seed: bytes,
    vault_seed: bytes,
    sealed: SealedCredential,
    auditor: bytes,
    proxies: list[bytes],
    threshold: int,
    timeout: float,
) -> dict[str, Any] | None:
    """Issue and post the auditor's per-field kfrags; None if it has no PRE key yet."""
    pre_key = client.get_pre_key(auditor)
    if pre_key is None:
        return None
    receiving = umbral_pre.PublicKey.from_compressed_bytes(bytes.fromhex(pre_key["umbral_key"]))
    try:
        kfrags = issue_auditor_kfrags(vault_seed, sealed, receiving, threshold, proxies)
    except KeyWrapError as exc:
        raise CommandError(f"cannot issue kfrags: {exc}") from exc
    verifying = compute_subject_signer(vault_seed).verifying_key()
    head = [
        sealed.subject_id,
        auditor,
        threshold,
        compute_umbral_public_key_bytes(verifying),
        compute_umbral_public_key_bytes(receiving),
        list(proxies),
    ]
    items = [[name, [k.sealed for k in ks]] for name, ks in sorted(kfrags.items())]
    doc: dict[str, Any] = {}
    for fields in compute_kfrag_parts(items, len(proxies)):  # parts with one parameter set merge
        doc = process_sign_submit(client, seed, TxKind.KYC_KFRAGS, [*head, fields], timeout)
    return doc


def compute_kfrag_parts(items: list[list[Any]], proxies: int) -> list[list[list[Any]]]:
    """Split ``[[field, [sealed kfrag per proxy]], ...]`` into KYC_KFRAGS parts.

    Each part holds at most MAX_KFRAG_FIELDS fields and about KFRAG_TX_BUDGET
    bytes of kfrags and field names (names counted at their maximum length),
    so every part fits a node's default transaction limit.
    """
    per_field = max(1, proxies) * SEALED_KFRAG_BYTES + MAX_KYC_FIELD_NAME + 4
    per_tx = max(1, min(MAX_KFRAG_FIELDS, KFRAG_TX_BUDGET // per_field))
    return [items[start : start + per_tx] for start in range(0, len(items), per_tx)]


def process_sync(
    client: KycClient,
    seed: bytes,
    vault_seed: bytes,
    subject: bytes,
    args: argparse.Namespace,
    *,
    reissue: bool = False,
) -> dict[str, list[str]]:
    """Issue kfrags to every registered auditor lacking them; returns issued/skipped keys."""
    record = client.get_kyc(subject)
    sealed = SealedCredential.from_bytes(bytes.fromhex(record["capsule"]))
    have = set() if reissue else set(record["kfrag_auditors"])
    proxies, threshold = get_proxies(client, args.proxies, args.threshold)
    result: dict[str, list[str]] = {"issued": [], "no_pre_key": [], "already": sorted(have)}
    for auditor in client.get_auditors():
        if auditor.hex() in have:
            continue
        done = process_issue_kfrags(
            client, seed, vault_seed, sealed, auditor, proxies, threshold, args.timeout
        )
        result["issued" if done is not None else "no_pre_key"].append(auditor.hex())
    return result


def _run(client: KycClient, args: argparse.Namespace) -> dict[str, Any]:
    subject = parse_hex32(args.subject, "--subject")
    if args.action == "events":
        return {"subject": subject.hex(), "events": client.get_kyc_events(subject)}
    seed = get_seed(args)
    if args.action == "sync":
        vault_seed = _load_vault_seed(args.vault_seed, create=False)
        return process_sync(client, seed, vault_seed, subject, args)
    if args.credential is None:
        raise CommandError("register needs --credential FILE.json")
    vault_seed = _load_vault_seed(args.vault_seed, create=True)
    try:
        credential = args.credential.read_bytes()
        sealed = seal_credential(vault_seed, subject, credential)
    except (OSError, KycError) as exc:
        raise CommandError(str(exc)) from exc
    blob = sealed.to_bytes()
    commitment = compute_credential_commitment(vault_seed, credential)
    doc = process_sign_submit(
        client, seed, TxKind.KYC_REGISTER, [subject, commitment, blob], args.timeout
    )
    result = process_sync(client, seed, vault_seed, subject, args, reissue=True)
    return {"register": doc, "fields": [f.name for f in sealed.fields], **result}


def run(args: argparse.Namespace) -> int:
    """Run one kyc action; prints a JSON document, 1 on any error."""
    client = KycClient(args.node, timeout=args.timeout + 5)
    try:
        doc = _run(client, args)
    except (CommandError, ClientError, KycError, ValueError) as exc:
        print(f"kyc: error: {exc}")
        return 1
    finally:
        client.close()
    print(json.dumps(doc, indent=2))
    return 0
