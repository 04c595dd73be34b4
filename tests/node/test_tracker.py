"""Transaction tracker: confirmation and settlement bookkeeping."""

from __future__ import annotations

from node.tracker import TxTracker


def test_tracker_marks_settled_when_checkpoint_precedes_execution() -> None:
    tracker = TxTracker()
    tracker.process_submitted(b"\x01" * 32)
    tracker.process_submitted(b"\x02" * 32)
    tracker.process_settled(10, 1)  # settled before this node executed height 7
    tracker.process_block(7, b"\xaa" * 32, [(b"\x01" * 32, True, "")])
    tracker.process_block(12, b"\xbb" * 32, [(b"\x02" * 32, True, "")])
    first, second = tracker.get(b"\x01" * 32), tracker.get(b"\x02" * 32)
    assert first is not None and first["status"] == "settled"
    assert second is not None and second["status"] == "confirmed"
