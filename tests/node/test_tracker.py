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


def test_tracker_documents_follow_the_transaction_and_the_bound_holds() -> None:
    tracker = TxTracker(max_records=3)
    hashes = [bytes([i]) * 32 for i in range(5)]
    for h in hashes:
        tracker.process_submitted(h)
    assert len(tracker) == 3
    assert tracker.get(hashes[0]) is None and tracker.get(hashes[1]) is None
    pending = tracker.get(hashes[2])
    assert pending is not None
    assert set(pending) == {"hash", "status", "submitted_ms"}
    assert pending["hash"] == hashes[2].hex() and pending["status"] == "pending"
    tracker.process_block(4, b"\xcc" * 32, [(hashes[2], True, ""), (hashes[3], False, "nonce")])
    confirmed, failed = tracker.get(hashes[2]), tracker.get(hashes[3])
    assert confirmed is not None and failed is not None
    assert confirmed["status"] == "confirmed" and confirmed["height"] == 4
    assert confirmed["block_hash"] == (b"\xcc" * 32).hex() and "reason" not in confirmed
    assert failed["status"] == "failed" and failed["reason"] == "nonce"
    assert "settled" not in confirmed
    tracker.process_settled(4, 2)
    settled, failed = tracker.get(hashes[2]), tracker.get(hashes[3])
    assert settled is not None and failed is not None
    assert settled["status"] == "settled" and settled["settled"] is True
    assert settled["settled_epoch"] == 2 and settled["settled_ms"] >= settled["confirmed_ms"]
    assert failed["status"] == "failed" and failed["settled"] is True
    still = tracker.get(hashes[4])
    assert still is not None and still["status"] == "pending"


def test_tracker_answers_membership_and_commit_latency_without_a_document() -> None:
    tracker = TxTracker()
    tx = b"\x07" * 32
    assert not tracker.is_tracked(tx) and tracker.get_commit_latency_ms(tx) is None
    tracker.process_submitted(tx)
    assert tracker.is_tracked(tx) and tracker.get_commit_latency_ms(tx) is None  # pending
    tracker.process_block(3, b"\xdd" * 32, [(tx, True, "")])
    doc = tracker.get(tx)
    assert doc is not None
    assert tracker.get_commit_latency_ms(tx) == doc["confirmed_ms"] - doc["submitted_ms"] >= 0


def test_tracker_forgets_the_earliest_settled_records_beyond_its_bound() -> None:
    tracker = TxTracker(max_records=100, max_settled=3)
    hashes = [bytes([i]) * 32 for i in range(6)]
    for h in hashes:
        tracker.process_submitted(h)
    tracker.process_block(1, b"\x01" * 32, [(hashes[0], True, ""), (hashes[1], False, "nonce")])
    tracker.process_block(2, b"\x02" * 32, [(hashes[2], True, ""), (hashes[3], True, "")])
    tracker.process_block(3, b"\x03" * 32, [(hashes[4], True, "")])
    tracker.process_settled(2, 1)  # settles heights 1 and 2: four records, one too many
    assert len(tracker) == 5 and not tracker.is_tracked(hashes[0])
    assert [tracker.is_tracked(h) for h in hashes[1:]] == [True] * 5
    tracker.process_settled(3, 2)
    assert [tracker.is_tracked(h) for h in hashes] == [False, False, True, True, True, True]
    pending, confirmed = tracker.get(hashes[5]), tracker.get(hashes[4])
    assert pending is not None and pending["status"] == "pending"  # unsettled stay
    assert confirmed is not None and confirmed["status"] == "settled"
