"""The node inbox: consensus entries first, batches not starved, both bounded."""

from __future__ import annotations

from node.inbox import Inbox, InboxEntry


def _entry(name: str) -> InboxEntry:
    return InboxEntry(name, [name.encode()], 0.0)


def test_consensus_entries_go_before_batches_in_fifo_order() -> None:
    inbox = Inbox(max_entries=10, max_bytes=1000, max_streak=8)
    assert inbox.process_put(_entry("b1"), is_batch=True)
    assert inbox.process_put(_entry("c1"), is_batch=False)
    assert inbox.process_put(_entry("b2"), is_batch=True)
    assert inbox.process_put(_entry("c2"), is_batch=False)
    taken = [inbox.process_take() for _ in range(4)]
    assert [e.sender for e in taken if e is not None] == ["c1", "c2", "b1", "b2"]
    assert inbox.process_take() is None and len(inbox) == 0


def test_batches_get_one_turn_after_each_streak_of_consensus_entries() -> None:
    inbox = Inbox(max_entries=100, max_bytes=1000, max_streak=3)
    for i in range(7):
        inbox.process_put(_entry(f"c{i}"), is_batch=False)
    for i in range(2):
        inbox.process_put(_entry(f"b{i}"), is_batch=True)
    order = []
    while (entry := inbox.process_take()) is not None:
        order.append(entry.sender)
    assert order == ["c0", "c1", "c2", "b0", "c3", "c4", "c5", "b1", "c6"]


def test_each_queue_is_bounded_on_its_own() -> None:
    inbox = Inbox(max_entries=2, max_bytes=1000)
    assert inbox.process_put(_entry("b1"), is_batch=True)
    assert inbox.process_put(_entry("b2"), is_batch=True)
    assert not inbox.process_put(_entry("b3"), is_batch=True)
    assert inbox.process_put(_entry("c1"), is_batch=False)
    assert len(inbox) == 3


def test_each_queue_is_bounded_in_bytes_and_frees_them_when_taken() -> None:
    inbox = Inbox(max_entries=100, max_bytes=10)
    assert inbox.process_put(InboxEntry("p", [b"aaaa", b"bbbb"], 0.0), is_batch=True)
    assert not inbox.process_put(InboxEntry("p", [b"ccc"], 0.0), is_batch=True)  # 8 + 3 > 10
    assert inbox.process_put(InboxEntry("p", [b"cc"], 0.0), is_batch=True)  # exactly 10
    assert inbox.process_put(InboxEntry("q", [b"x" * 10], 0.0), is_batch=False)  # own bound
    assert inbox.get_bytes() == 20
    assert inbox.process_take() is not None and inbox.get_bytes() == 10
    assert inbox.process_take() is not None  # the 8-byte batch entry
    assert inbox.process_put(InboxEntry("p", [b"dddddddd"], 0.0), is_batch=True)
    assert inbox.get_bytes() == 10
