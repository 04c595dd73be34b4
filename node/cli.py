"""The ``dmchain`` command line.

Each sub-command lives in its own module that exposes
``add_arguments(parser)`` and ``run(args) -> int``; this file only lists them,
so ``dmchain --help`` always shows the sub-commands that exist. Modules are
imported lazily so that ``dmchain --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (name, module, one-line help). Keep in step with the README's command reference.
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("run-local", "node.cmd_run_local", "run the local reference consortium and show it working"),
    ("testnet", "node.cmd_testnet", "write keys, genesis and configs for a local consortium"),
    ("start", "node.cmd_start", "run one validator node in the foreground"),
    ("cluster", "node.cmd_cluster", "start, stop or inspect every node of a testnet directory"),
    ("init", "node.cmd_init", "prepare one node's home to join an existing consortium"),
    ("keys", "node.cmd_keys", "generate a node's keys or show its genesis entry"),
    ("tx", "node.cmd_tx", "sign a transaction locally and submit it to a node"),
    ("query", "node.cmd_query", "read status, accounts, blocks, transactions and supply"),
    ("version", "node.cmd_version", "print the version and the installed component versions"),
    ("sim", "consensus.sim.cmd", "run seeded consensus cluster simulations and check invariants"),
    ("bench", "node.cmd_bench", "benchmark a cluster: throughput, latency, settlement, CPU"),
    # -- data access --
    ("proxy", "node.cmd_proxy", "run the proxy service (re-encryption work) beside a node"),
    ("wallet", "node.cmd_wallet", "create or show a wallet (account seed and Umbral keys)"),
    ("data", "node.cmd_data", "publish, request, fetch, dispute, revoke or fail data assets"),
    ("agent", "node.cmd_agent", "run the provider agent that grants access to your assets"),
    # -- KYC audit --
    ("kyc", "node.cmd_kyc", "register a subject's sealed KYC credential; issue auditor kfrags"),
    ("audit", "node.cmd_audit", "KYC_Audit: request, approve, object, status, decrypt"),
    ("governance", "node.cmd_governance", "k-of-n governance actions: auditors, parameters"),
    # -- training jobs --
    ("job", "node.cmd_job", "submit a training job, show its status, fetch its model, expire it"),
    ("executor", "node.cmd_executor", "run a training-job executor, or unregister it"),
]


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="dmchain",
        description="dmchain: a permissioned consortium chain for AI data marketplaces.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in SUBCOMMANDS:
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sp)
        sp.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen sub-command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
