"""Crash-test writer: commits deterministic blocks to a LevelDB ledger forever.

Usage: python crash_writer.py DB_PATH. Prints "ready <height>" once the store
is open, then commits blocks until killed. Block h holds transfers whose
content depends only on h and the state, so a resumed writer continues the
same chain.
"""

from __future__ import annotations

import sys

from ledger_helpers import USERS, Chain, make_genesis

from ledger.store import LevelDBStore
from ledger.tx import TxKind

TXS_PER_BLOCK = 100


def main() -> None:
    chain = Chain(store=LevelDBStore(sys.argv[1], sync=True), genesis=make_genesis())
    print(f"ready {chain.state.height}", flush=True)
    while True:
        height = chain.state.height + 1
        txs = []
        for i in range(TXS_PER_BLOCK):
            sender = USERS[(height + i) % len(USERS)]
            to = USERS[(height + 2 * i + 1) % len(USERS)]
            txs.append(chain.tx(sender, TxKind.TRANSFER, [to.pub, 1 + (height * 7 + i) % 1000]))
        chain.run(txs, verified=True)


if __name__ == "__main__":
    main()
