"""SIGKILL a LevelDB writer at random moments; every reopen must be consistent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from ledger_helpers import Chain, make_genesis

from ledger import schema
from ledger.apply import apply_block
from ledger.chain import Ledger
from ledger.records import Account
from ledger.store import LevelDBStore, MemoryStore

KILLS = 50
WRITER = Path(__file__).with_name("crash_writer.py")


def _check_consistent(path: str, full_replay: bool) -> int:
    genesis = make_genesis()
    store = LevelDBStore(path)
    try:
        ledger = Ledger(store, genesis)
        state = ledger.state
        height = state.height
        if height > 0:
            block = ledger.get_block(height)
            assert block is not None, "head block missing"
            assert block.block_hash() == state.block_hash
            assert ledger.get_height_of(state.block_hash) == height
            for tx in block.txs:
                receipt = ledger.get_receipt(tx.tx_hash)
                assert receipt is not None and receipt.height == height
        assert ledger.get_block(height + 1) is None, "block beyond the head"
        supply = state.get_supply()
        assert sum(supply) == genesis.total_supply()
        accounts: list[Account] = [a for _, a in state.iterate(schema.ACCOUNT)]
        assert sum(a.balance for a in accounts) == supply.balances
        if full_replay:
            replay = Chain(store=MemoryStore(), genesis=genesis).ledger
            for h in range(1, height + 1):
                block = ledger.get_block(h)
                assert block is not None
                new, receipts = apply_block(replay.state, block)
                replay.commit(new, block, receipts)
            assert replay.state.digest == state.digest
        return height
    finally:
        store.close()


def test_sigkill_at_random_points_always_reopens_at_a_complete_block(tmp_path: Path) -> None:
    rng = random.Random(20261121)
    path = str(tmp_path / "db")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(WRITER.parent), *sys.path]))
    heights = []
    for attempt in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, str(WRITER), path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode()
            assert line.startswith("ready"), proc.stderr.read().decode() if proc.stderr else line
            time.sleep(rng.uniform(0.0, 0.25))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)
            if proc.stdout:
                proc.stdout.close()
            if proc.stderr:
                proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        heights.append(_check_consistent(path, full_replay=attempt % 10 == 9))
    assert heights == sorted(heights)
    assert heights[-1] > 0
