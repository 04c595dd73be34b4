"""ForwardLog: what a node sent to the leader alone, until it commits or escalates."""

from __future__ import annotations

import random

import pytest

from consensus.invariant import InvariantError
from node.forwarding import ForwardLog


def _h(i: int) -> bytes:
    return i.to_bytes(32, "big")


def _raw(i: int) -> bytes:
    return b"tx%d" % i


def test_committed_transactions_are_forgotten_and_never_escalate() -> None:
    log = ForwardLog(10)
    for i in range(3):
        log.process_sent(_h(i), _raw(i), view=0, now=float(i))
    log.process_committed([_h(0), _h(2), _h(99)])
    assert len(log) == 1 and log.is_logged(_h(1)) and not log.is_logged(_h(0))
    assert log.take_escalated(now=100.0, after_s=2.0) == [_raw(1)]
    assert len(log) == 0


def test_escalation_takes_only_the_old_ones_oldest_first_and_once() -> None:
    log = ForwardLog(10)
    for i in range(5):
        log.process_sent(_h(i), _raw(i), view=0, now=float(i))
    assert log.take_escalated(now=3.0, after_s=2.0) == [_raw(0), _raw(1)]
    assert log.take_escalated(now=3.0, after_s=2.0) == []
    assert log.take_escalated(now=4.5, after_s=2.0) == [_raw(2)]
    assert [log.is_logged(_h(i)) for i in range(5)] == [False, False, False, True, True]


def test_a_new_view_resends_the_older_views_and_keeps_the_escalation_time() -> None:
    log = ForwardLog(10)
    log.process_sent(_h(0), _raw(0), view=0, now=0.0)
    log.process_sent(_h(1), _raw(1), view=1, now=1.0)
    assert log.take_for_view(1) == [_raw(0)]
    assert log.take_for_view(1) == []
    assert log.take_for_view(2) == [_raw(0), _raw(1)]
    # Re-sending did not restart the clock: the first one still escalates at 2.0.
    assert log.take_escalated(now=2.0, after_s=2.0) == [_raw(0)]


def test_the_log_is_bounded_and_a_second_send_keeps_the_first_time() -> None:
    log = ForwardLog(2)
    log.process_sent(_h(0), _raw(0), view=0, now=0.0)
    log.process_sent(_h(0), _raw(0), view=3, now=9.0)
    assert len(log) == 1 and log.take_for_view(1) == [_raw(0)]
    log.process_sent(_h(1), _raw(1), view=0, now=1.0)
    assert log.is_full()
    with pytest.raises(InvariantError):
        log.process_sent(_h(2), _raw(2), view=0, now=2.0)
    with pytest.raises(InvariantError):
        ForwardLog(0)


def test_every_transaction_ends_committed_or_escalated_exactly_once() -> None:
    rng = random.Random(7)
    log = ForwardLog(50)
    sent: set[int] = set()
    committed: set[int] = set()
    escalated: list[bytes] = []
    now, view = 0.0, 0
    for i in range(2_000):
        now += rng.random() * 0.05
        if not log.is_full():
            log.process_sent(_h(i), _raw(i), view, now)
            sent.add(i)
        if rng.random() < 0.3:
            done = rng.sample(sorted(sent - committed), k=min(3, len(sent - committed)))
            live = [j for j in done if log.is_logged(_h(j))]
            log.process_committed(_h(j) for j in done)
            committed.update(live)
        if rng.random() < 0.01:
            view += 1
            assert all(r in {_raw(j) for j in sent} for r in log.take_for_view(view))
        escalated.extend(log.take_escalated(now, after_s=1.0))
    escalated.extend(log.take_escalated(now + 10.0, after_s=1.0))
    assert len(log) == 0
    assert len(escalated) == len(set(escalated))
    assert {_raw(j) for j in committed}.isdisjoint(escalated)
    assert {_raw(j) for j in committed} | set(escalated) == {_raw(j) for j in sent}
