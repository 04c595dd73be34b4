"""Measure the ledger's apply rate for transfers on one core.

Usage: python bench/ledger_apply.py [--blocks N] [--block-txs N] [--accounts N]
                                   [--store memory|leveldb]

Pre-signs ``blocks * block_txs`` transfers between ``accounts`` funded
accounts, then reports, per phase, transactions per second:
decode (bytes -> Tx), verify (one Ed25519 check each), apply (apply_block with
signatures already verified, as the node does), and apply+commit (including
the state digest and the atomic store write).
"""

from __future__ import annotations

import argparse
import tempfile
import time

from consensus.crypto import compute_public_key, compute_seed_from_label
from ledger.apply import apply_block
from ledger.block import compute_block
from ledger.chain import Ledger
from ledger.genesis import TOKEN, parse_genesis
from ledger.store import KVStore, LevelDBStore, MemoryStore
from ledger.tx import TxKind, compute_signed_tx, decode_tx, is_valid_tx_signature

CHAIN = "dmchain-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--block-txs", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--store", choices=["memory", "leveldb"], default="leveldb")
    args = parser.parse_args()

    seeds = [compute_seed_from_label(f"bench-{i}") for i in range(args.accounts)]
    pubs = [compute_public_key(s) for s in seeds]
    gov = pubs[0].hex()
    genesis = parse_genesis(
        {
            "chain_id": CHAIN,
            "balances": {p.hex(): 1_000_000 * TOKEN for p in pubs},
            "governance": {"threshold": 1, "keys": [gov]},
            "oracle": {"threshold": 1, "keys": [gov]},
        }
    )
    nonces = [0] * args.accounts
    raw_blocks: list[list[bytes]] = []
    for b in range(args.blocks):
        raws = []
        for i in range(args.block_txs):
            n = (b * args.block_txs + i) % args.accounts
            to = pubs[(n * 7 + 1) % args.accounts]
            raws.append(compute_signed_tx(seeds[n], CHAIN, TxKind.TRANSFER, nonces[n], [to, 1]))
            nonces[n] += 1
        raw_blocks.append(raws)
    total = args.blocks * args.block_txs

    t0 = time.perf_counter()
    tx_blocks = [[decode_tx(r) for r in raws] for raws in raw_blocks]
    t_decode = time.perf_counter() - t0

    t0 = time.perf_counter()
    assert all(is_valid_tx_signature(tx) for txs in tx_blocks for tx in txs)
    t_verify = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        store: KVStore = LevelDBStore(tmp, sync=True) if args.store == "leveldb" else MemoryStore()
        ledger = Ledger(store, genesis)
        t_apply = 0.0
        t_commit = 0.0
        for txs in tx_blocks:
            state = ledger.state
            height = state.height + 1
            block = compute_block(CHAIN, height, state.block_hash, state.digest, height // 100, txs)
            t0 = time.perf_counter()
            new, receipts = apply_block(state, block, verified=True)
            t1 = time.perf_counter()
            ledger.commit(new, block, receipts)
            t2 = time.perf_counter()
            t_apply += t1 - t0
            t_commit += t2 - t1
            assert all(r.ok for r in receipts), receipts[0]
        store.close()

    print(f"transfers: {total} in {args.blocks} blocks of {args.block_txs}, store={args.store}")
    print(f"decode         {total / t_decode:10.0f} tx/s")
    print(f"verify (1 sig) {total / t_verify:10.0f} tx/s")
    print(f"apply          {total / t_apply:10.0f} tx/s  (signatures pre-verified)")
    print(f"commit         {total / t_commit:10.0f} tx/s  (encode, digest, one write batch)")
    print(f"apply+commit   {total / (t_apply + t_commit):10.0f} tx/s")
    print(f"full path      {total / (t_decode + t_verify + t_apply + t_commit):10.0f} tx/s")


if __name__ == "__main__":
    main()
