"""Genesis loading and validation; store behaviour; ledger reopen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ledger_helpers import USERS, Chain, make_genesis

from ledger.chain import Ledger
from ledger.errors import GenesisError, StoreError
from ledger.genesis import (
    Params,
    compute_genesis_template,
    genesis_to_json,
    load_genesis,
    parse_genesis,
    write_genesis_template,
)
from ledger.store import LevelDBStore, MemoryStore, StoreClosedError
from ledger.tx import TxKind


def test_template_round_trips_with_table2_defaults(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    write_genesis_template(str(path), "net-1")
    genesis = load_genesis(str(path))
    assert genesis.chain_id == "net-1"
    assert genesis.params == Params()
    assert genesis.params.min_asset_stake == 100_000_000 and genesis.params.rho_ppm == 500_000
    assert parse_genesis(genesis_to_json(genesis)) == genesis
    assert genesis.total_supply() == 1_010_000_000_000


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("chain_id", "", "chain_id"),
        ("params", {"rho_ppm": 2_000_000}, "params.rho_ppm"),
        ("params", {"alpha": 1}, "params.alpha"),
        ("params", {"escrow_policy": "keep"}, "params.escrow_policy"),
        ("params", {"epoch_length": 0}, "params.epoch_length"),
        ("balances", {"zz": 1}, "balances"),
        ("balances", {"00" * 32: -1}, "balances"),
        ("governance", {"threshold": 3, "keys": ["00" * 32]}, "governance.threshold"),
        ("oracle", {"threshold": 1, "keys": []}, "oracle.keys"),
        ("auditors", ["00" * 31], "auditors[0]"),
    ],
)
def test_bad_fields_are_named(field: str, value: Any, message: str) -> None:
    data = compute_genesis_template()
    data[field] = value
    with pytest.raises(GenesisError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_genesis(data)


def test_bad_validator_fields_are_named(tmp_path: Path) -> None:
    data = compute_genesis_template()
    data["validators"][0]["roles"] = ["miner"]
    with pytest.raises(GenesisError, match=r"validators\[0\]\.roles"):
        parse_genesis(data)
    data = compute_genesis_template()
    data["validators"][0]["consensus_key"] = "abc"
    with pytest.raises(GenesisError, match=r"validators\[0\]\.consensus_key"):
        parse_genesis(data)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(GenesisError, match="not valid JSON"):
        load_genesis(str(bad))
    with pytest.raises(GenesisError, match="cannot read"):
        load_genesis(str(tmp_path / "missing.json"))
    data = compute_genesis_template()
    json.dumps(data)


def test_memory_store_batches_and_prefix_iteration() -> None:
    store = MemoryStore()
    store.write({b"a1": b"x", b"a2": b"y", b"b1": b"z"})
    store.write({b"a1": None, b"a3": b"w"})
    assert store.get(b"a1") is None
    assert list(store.iterate(b"a")) == [(b"a2", b"y"), (b"a3", b"w")]


def test_leveldb_reopen_resumes_at_head_and_refuses_other_genesis(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    chain = Chain(store=LevelDBStore(path))
    chain.run1(USERS[0], TxKind.TRANSFER, [USERS[1].pub, 9])
    chain.run1(USERS[0], TxKind.TRANSFER, [USERS[1].pub, 9])
    digest, height = chain.state.digest, chain.state.height
    chain.ledger.store.close()
    reopened = Ledger(LevelDBStore(path), make_genesis())
    assert (reopened.state.digest, reopened.state.height) == (digest, height)
    assert (
        reopened.state.get_account(USERS[1].pub).balance
        == chain.state.get_account(USERS[1].pub).balance
    )
    reopened.store.close()
    with pytest.raises(StoreError, match="different genesis"):
        Ledger(LevelDBStore(path), make_genesis({"min_fee": 1}))


def test_closed_leveldb_store_refuses_use_and_closes_once(tmp_path: Path) -> None:
    store = LevelDBStore(str(tmp_path / "db"))
    store.write({b"k": b"v"})
    assert not store.is_closed()
    store.close()
    store.close()
    assert store.is_closed()
    with pytest.raises(StoreClosedError):
        store.get(b"k")
    with pytest.raises(StoreClosedError):
        store.write({b"k": None})
    assert LevelDBStore(str(tmp_path / "db")).get(b"k") == b"v"
