"""Testnet generation: keys, genesis and one config per node in a directory.

``process_write_testnet`` lays out::

    DIR/genesis.json              the consortium's genesis (shared by every node)
    DIR/node00 .. DIR/nodeNN/     one home per node: config.json, keys/
    DIR/clients.json              funded client account seeds (tests, bench)
    DIR/governance.json           governance and quality-oracle seeds (k-of-n)

PBFT replicas come first (node00 .. node<pbft-1>), then PoS validators. Every
node listens on 127.0.0.1: p2p on ``base_port + i``, HTTP on
``base_port + 100 + i``. Client seeds are derived from a label so a
benchmark can regenerate them; node keys come from the OS random source.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.crypto import compute_public_key, compute_seed_from_label
from ledger.genesis import TOKEN, Params, parse_genesis
from node.config import Limits, NodeConfig, write_config
from node.keys import generate_node_keys, save_node_keys

GENESIS_FILE = "genesis.json"
CLIENTS_FILE = "clients.json"
GOVERNANCE_FILE = "governance.json"
VALIDATOR_STAKE = 10_000 * TOKEN
VALIDATOR_BALANCE = 1_000 * TOKEN
CLIENT_BALANCE = 1_000_000 * TOKEN
MAX_NODES = 100
MAX_CLIENTS = 100_000


class TestnetError(ValueError):
    """Bad testnet parameters or an output directory that is in the way."""


@dataclass(frozen=True)
class TestnetSpec:
    """What to generate."""

    out: Path
    pbft: int = 10
    pos: int = 8
    clients: int = 64
    base_port: int = 26600
    chain_id: str = "dmchain-local"
    epoch_length: int = 10
    governance_keys: int = 3
    governance_threshold: int = 2

    def get_error(self) -> str | None:
        """Return None iff the spec is usable, else why not."""
        if self.pbft < 1 or self.pos < 0 or self.pbft + self.pos > MAX_NODES:
            return f"need 1 <= --pbft and 0 <= --pos with at most {MAX_NODES} nodes in all"
        if self.pos == 0:
            return "need at least one PoS validator (--pos) to settle checkpoints"
        if not 0 <= self.clients <= MAX_CLIENTS:
            return f"--clients must be in [0, {MAX_CLIENTS}]"
        if not 1024 <= self.base_port <= 65535 - 100 - MAX_NODES:
            return "--base-port must leave room for p2p and HTTP ports below 65535"
        if not 1 <= self.governance_threshold <= self.governance_keys:
            return "governance threshold must be in [1, number of governance keys]"
        if self.epoch_length < 1:
            return "--epoch-length must be positive"
        return None


def compute_client_seed(chain_id: str, index: int) -> bytes:
    """Return the seed of client account ``index`` of a testnet (reproducible)."""
    return compute_seed_from_label(f"{chain_id}/client/{index}")


def _write_json(path: Path, value: Any, secret: bool = False) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    if secret:
        os.chmod(path, 0o600)


def process_write_testnet(spec: TestnetSpec, limits: Limits | None = None) -> Path:
    """Generate the testnet described by ``spec``; returns the genesis path.

    Raises TestnetError if the spec is bad or ``spec.out`` already holds a testnet.
    """
    error = spec.get_error()
    if error is not None:
        raise TestnetError(error)
    if (spec.out / GENESIS_FILE).exists():
        raise TestnetError(f"{spec.out} already holds a testnet (remove it or pick another --out)")
    spec.out.mkdir(parents=True, exist_ok=True)
    count = spec.pbft + spec.pos
    validators = []
    balances: dict[str, int] = {}
    configs = []
    for i in range(count):
        name = f"node{i:02d}"
        home = spec.out / name
        keys = generate_node_keys()
        save_node_keys(home, keys)
        account = keys.get_account_public_key()
        p2p_port = spec.base_port + i
        validators.append(
            {
                "name": name,
                "consensus_key": account.hex(),
                "roles": ["pbft"] if i < spec.pbft else ["pos"],
                "stake": VALIDATOR_STAKE,
                "operator": account.hex(),
                "peer_id": keys.get_peer_id(),
                "multiaddr": f"/ip4/127.0.0.1/tcp/{p2p_port}",
                "umbral_key": keys.get_umbral_public_key_hex(),
            }
        )
        balances[account.hex()] = VALIDATOR_BALANCE
        configs.append(
            NodeConfig(
                name=name,
                home=home,
                p2p_port=p2p_port,
                http_port=spec.base_port + 100 + i,
                genesis_file=f"../{GENESIS_FILE}",
                limits=limits or Limits(),
            )
        )
    client_seeds = [compute_client_seed(spec.chain_id, i) for i in range(spec.clients)]
    for seed in client_seeds:
        balances[compute_public_key(seed).hex()] = CLIENT_BALANCE
    gov_seeds = [os.urandom(32) for _ in range(spec.governance_keys)]
    oracle_seeds = [os.urandom(32) for _ in range(3)]
    params = Params().to_wire()
    params["epoch_length"] = spec.epoch_length
    genesis = {
        "chain_id": spec.chain_id,
        "params": params,
        "balances": dict(sorted(balances.items())),
        "validators": validators,
        "governance": {
            "threshold": spec.governance_threshold,
            "keys": [compute_public_key(s).hex() for s in gov_seeds],
        },
        "oracle": {"threshold": 2, "keys": [compute_public_key(s).hex() for s in oracle_seeds]},
        "auditors": [],
    }
    parse_genesis(genesis)  # the generator must never write a genesis the node refuses
    genesis_path = spec.out / GENESIS_FILE
    _write_json(genesis_path, genesis)
    for config in configs:
        write_config(config)
    _write_json(spec.out / CLIENTS_FILE, {"seeds": [s.hex() for s in client_seeds]}, secret=True)
    _write_json(
        spec.out / GOVERNANCE_FILE,
        {"governance": [s.hex() for s in gov_seeds], "oracle": [s.hex() for s in oracle_seeds]},
        secret=True,
    )
    return genesis_path


def get_client_seeds(testnet: Path) -> list[bytes]:
    """Return the funded client seeds of a testnet directory."""
    data = json.loads((testnet / CLIENTS_FILE).read_text())
    return [bytes.fromhex(s) for s in data["seeds"]]
