"""Which outgoing batches wait for the node's records to be durable."""

from __future__ import annotations

from pathlib import Path

import trio

from node import runtime, testnet
from node.config import load_config
from node.keys import load_node_keys


def _frame(channel: int, body: bytes = b"x") -> bytes:
    return bytes([channel]) + body


def test_a_batch_with_a_consensus_frame_waits_for_the_flush() -> None:
    for channel in (runtime.CH_PBFT, runtime.CH_POS):
        assert runtime.is_consensus_batch([_frame(channel)])
        assert runtime.is_consensus_batch([_frame(runtime.CH_BLOCK), _frame(channel)])


def test_batches_of_transactions_and_blocks_leave_without_waiting() -> None:
    others = [
        runtime.CH_TXS,
        runtime.CH_TXS_TO_LEADER,
        runtime.CH_BLOCK,
        runtime.CH_BLOCK_REQUEST,
        runtime.CH_BLOCK_RESPONSE,
        runtime.CH_SETTLED_REQUEST,
    ]
    assert not runtime.is_consensus_batch([_frame(c) for c in others])
    assert not runtime.is_consensus_batch([])


def test_a_consensus_batch_leaves_only_after_the_pending_writes_are_on_disk(
    tmp_path: Path,
) -> None:
    """The node's hook makes every pending write durable before a PBFT frame
    leaves, and lets a batch of transactions leave with its writes pending."""
    testnet.process_write_testnet(
        testnet.TestnetSpec(out=tmp_path / "net", pbft=4, pos=1, clients=1)
    )
    home = tmp_path / "net" / "node00"
    node = runtime.Node(load_config(home), load_node_keys(home))
    disk = node.store._store  # the LevelDB store under the pending overlay
    try:
        node.store.write({b"Nprobe": b"1"})
        trio.run(node._flush_before_write, [_frame(runtime.CH_TXS)])
        assert node.store.has_pending() and disk.get(b"Nprobe") is None
        trio.run(node._flush_before_write, [_frame(runtime.CH_TXS), _frame(runtime.CH_PBFT)])
        assert not node.store.has_pending() and disk.get(b"Nprobe") == b"1"
    finally:
        node.close()
