"""``dmchain governance``: k-of-n signed governance actions (auditors, parameters).

``register-auditor KEY`` / ``remove-auditor KEY`` / ``set-param NAME VALUE``
sign the action with every seed of ``--gov-keys`` (a testnet's governance.json,
or any file ``{"governance": [hex seeds]}``) for the chain's current governance
sequence, and submit it from the first of them. The chain counts the distinct
valid signatures and needs k of the n governance keys.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from consensus.crypto import compute_public_key, compute_signature
from ledger.rules import compute_governance_message
from ledger.tx import TxKind
from node.client import ClientError
from node.kyc_client import KycClient
from node.kyc_tools import (
    CommandError,
    add_node_argument,
    load_governance_seeds,
    parse_hex32,
    process_sign_submit,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the action and the governance key file."""
    parser.add_argument("action", choices=["register-auditor", "remove-auditor", "set-param"])
    parser.add_argument("args", nargs="+", help="KEY, or NAME VALUE for set-param")
    parser.add_argument("--gov-keys", type=Path, required=True, help="governance.json")
    add_node_argument(parser)


def _parse_action(action: str, args: list[str]) -> tuple[str, list[Any]]:
    if action in ("register-auditor", "remove-auditor"):
        if len(args) != 1:
            raise CommandError(f"{action} takes one account key (hex)")
        return action.replace("-", "_"), [parse_hex32(args[0], "account key")]
    if len(args) != 2:
        raise CommandError("set-param takes NAME VALUE")
    name, text = args
    value: Any = int(text) if text.lstrip("-").isdigit() else text
    return "set_param", [name, value]


def process_governance_action(
    client: KycClient, seeds: list[bytes], action: str, args: list[Any], timeout: float
) -> dict[str, Any]:
    """Sign ``action`` with every seed for the current sequence, submit, wait; CommandError."""
    gov = client.get_governance()
    chain_id = client.get_status()["chain_id"]
    message = compute_governance_message(chain_id, action, args, int(gov["seq"]))
    members = set(gov["keys"])
    sigs = [
        [compute_public_key(s), compute_signature(s, message)]
        for s in seeds
        if compute_public_key(s).hex() in members
    ]
    if len(sigs) < int(gov["threshold"]):
        raise CommandError(f"{len(sigs)} governance keys given, {gov['threshold']} needed")
    payload = [action, args, int(gov["seq"]), sigs]
    return process_sign_submit(client, seeds[0], TxKind.GOVERNANCE, payload, timeout)


def run(args: argparse.Namespace) -> int:
    """Run one governance action; prints the confirmed status document."""
    try:
        seeds = load_governance_seeds(args.gov_keys)
        action, action_args = _parse_action(args.action, args.args)
        client = KycClient(args.node, timeout=args.timeout + 5)
        try:
            doc = process_governance_action(client, seeds, action, action_args, args.timeout)
        finally:
            client.close()
    except (CommandError, ClientError) as exc:
        print(f"governance: error: {exc}")
        return 1
    print(json.dumps(doc, indent=2))
    return 0
