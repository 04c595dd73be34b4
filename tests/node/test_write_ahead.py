"""Which outgoing batches wait for the node's records to be durable."""

from __future__ import annotations

from node import runtime


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
