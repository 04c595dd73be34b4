"""Transport over real py-libp2p hosts on 127.0.0.1 (TCP, Noise, yamux).

Each test binds fresh ports; waits are bounded by trio.fail_after so a broken
transport fails the test instead of hanging it.
"""

from __future__ import annotations

import logging
import socket
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.stream_muxer.yamux import yamux

from consensus.crypto import compute_seed_from_label
from node.framing import FrameError, encode_frames
from node.keys import compute_identity_key_pair
from node.transport import (
    FRAMES_PROTOCOL,
    Member,
    Transport,
    TransportError,
    TransportLimits,
)
from node.yamux_window import compute_release

WAIT_S = 20.0
FAST = TransportLimits(reconnect_initial_delay=0.02, reconnect_max_delay=0.2, dial_timeout=3.0)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _key(label: str) -> KeyPair:
    return compute_identity_key_pair(compute_seed_from_label(label))


def _peer_id(label: str) -> str:
    return ID.from_pubkey(_key(label).public_key).to_base58()


class Inbox:
    """Collects delivered frames per sender."""

    def __init__(self) -> None:
        self.frames: dict[str, list[bytes]] = defaultdict(list)
        self.calls = 0

    def __call__(self, sender: str, frames: list[bytes]) -> None:
        self.calls += 1
        self.frames[sender].extend(frames)


def _cluster(
    names: list[str], limits: TransportLimits = FAST
) -> tuple[dict[str, Member], dict[str, Transport], dict[str, Inbox]]:
    ports = {name: _free_port() for name in names}
    members = {
        name: Member(_peer_id(name), f"/ip4/127.0.0.1/tcp/{ports[name]}") for name in names
    }
    inboxes = {name: Inbox() for name in names}
    transports = {
        name: Transport(_key(name), members[name].multiaddr, members, inboxes[name], limits)
        for name in names
    }
    return members, transports, inboxes


class Running:
    """A transport started in a test nursery: cancel it with stop()."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()

    async def stop(self) -> None:
        """Cancel the transport and wait until its run() has returned."""
        self.scope.cancel()
        await self.stopped.wait()


async def _start(nursery: trio.Nursery, transport: Transport) -> Running:
    running = Running()

    async def runner(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with running.scope:
                await transport.run(task_status=task_status)
        finally:
            running.stopped.set()

    await nursery.start(runner)
    return running


async def _wait_until(condition: Callable[[], bool], what: str) -> None:
    with trio.move_on_after(WAIT_S):
        while not condition():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting for {what}")


def _all_connected(transports: dict[str, Transport]) -> bool:
    return all(t.get_connected_peers() == t.get_peer_names() for t in transports.values())


async def test_frames_flow_both_ways_in_order_among_three() -> None:
    names = ["a", "b", "c"]
    _, transports, inboxes = _cluster(names)
    count = 300
    async with trio.open_nursery() as nursery:
        for transport in transports.values():
            await _start(nursery, transport)
        # Sending before the connections exist: frames wait in the queues.
        for sender, transport in transports.items():
            for i in range(count):
                for receiver in names:
                    if receiver != sender:
                        assert transport.send(receiver, f"{sender}>{receiver}:{i}".encode())
        for sender, transport in transports.items():
            assert transport.broadcast(f"{sender}:all".encode()) == 2

        def delivered() -> bool:
            return all(
                len(inboxes[r].frames[s]) == count + 1 for r in names for s in names if s != r
            )

        await _wait_until(delivered, "all frames delivered")
        assert _all_connected(transports)
        nursery.cancel_scope.cancel()

    for receiver in names:
        assert set(inboxes[receiver].frames) == set(names) - {receiver}
        for sender in names:
            if sender == receiver:
                continue
            expected = [f"{sender}>{receiver}:{i}".encode() for i in range(count)]
            expected.append(f"{sender}:all".encode())
            assert inboxes[receiver].frames[sender] == expected
    for transport in transports.values():
        assert transport.metrics.frames_out == 2 * (count + 1)
        assert transport.metrics.frames_in == 2 * (count + 1)
        assert transport.metrics.drops == 0
        assert transport.metrics.rejected_peers == 0


async def test_batching_puts_many_frames_in_one_write() -> None:
    _, transports, inboxes = _cluster(["a", "b"])
    a, b = transports["a"], transports["b"]
    async with trio.open_nursery() as nursery:
        await _start(nursery, a)
        await _start(nursery, b)
        await _wait_until(lambda: _all_connected(transports), "connections")
        writes_before = a.metrics.writes
        frames = [i.to_bytes(4, "big") * 50 for i in range(300)]  # 200-byte frames
        for frame in frames:
            assert a.send("b", frame)
        await _wait_until(lambda: len(inboxes["b"].frames["a"]) == 300, "batch delivered")
        nursery.cancel_scope.cancel()
    # 300 * 204 bytes fit in one 64 KiB batch: a single write() carried them.
    assert a.limits.max_batch_bytes >= 300 * 204
    assert a.metrics.writes - writes_before == 1
    assert inboxes["b"].frames["a"] == frames
    assert b.metrics.reads < 300


async def test_batch_size_bound_splits_writes() -> None:
    limits = TransportLimits(
        max_batch_bytes=10 * 204,
        reconnect_initial_delay=0.02,
        reconnect_max_delay=0.2,
    )
    _, transports, inboxes = _cluster(["a", "b"], limits)
    a = transports["a"]
    async with trio.open_nursery() as nursery:
        for transport in transports.values():
            await _start(nursery, transport)
        await _wait_until(lambda: _all_connected(transports), "connections")
        writes_before = a.metrics.writes
        for i in range(100):
            assert a.send("b", bytes([i]) * 200)
        await _wait_until(lambda: len(inboxes["b"].frames["a"]) == 100, "frames delivered")
        nursery.cancel_scope.cancel()
    assert a.metrics.writes - writes_before == 10
    assert inboxes["b"].frames["a"] == [bytes([i]) * 200 for i in range(100)]


async def test_unknown_peer_is_rejected_and_members_keep_working(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="dmchain.transport")
    members, transports, inboxes = _cluster(["a", "b"])
    a = transports["a"]
    # A rogue node that lists itself and "a" as members; "a" does not list it.
    rogue_port = _free_port()
    rogue_members = {
        "a": members["a"],
        "rogue": Member(_peer_id("rogue"), f"/ip4/127.0.0.1/tcp/{rogue_port}"),
    }
    rogue = Transport(
        _key("rogue"), f"/ip4/127.0.0.1/tcp/{rogue_port}", rogue_members, Inbox(), FAST
    )
    # A bare libp2p host with a non-member key that asks for the frames protocol.
    stranger = new_host(key_pair=_key("stranger"))
    stranger_error: list[BaseException] = []
    async with trio.open_nursery() as nursery:
        for transport in transports.values():
            await _start(nursery, transport)
        await _start(nursery, rogue)
        assert rogue.send("a", b"rogue frame")
        async with stranger.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            try:
                with trio.fail_after(WAIT_S):
                    await stranger.connect(
                        PeerInfo(ID.from_base58(members["a"].peer_id),
                                 [multiaddr.Multiaddr(members["a"].multiaddr)])
                    )
                    stream = await stranger.new_stream(
                        ID.from_base58(members["a"].peer_id), [FRAMES_PROTOCOL]
                    )
                    await stream.write(encode_frames([b"stranger frame"]))
                    await stream.read(1)
            except Exception as exc:
                stranger_error.append(exc)
        await _wait_until(lambda: a.metrics.rejected_peers >= 2, "rejections")
        for i in range(50):
            assert a.send("b", b"to b %d" % i)
            assert transports["b"].send("a", b"to a %d" % i)
        await _wait_until(
            lambda: len(inboxes["b"].frames["a"]) == 50 and len(inboxes["a"].frames["b"]) == 50,
            "member traffic",
        )
        nursery.cancel_scope.cancel()
    assert set(inboxes["a"].frames) == {"b"}
    assert all(b"rogue" not in f and b"stranger" not in f for f in inboxes["a"].frames["b"])
    assert "rogue" not in a.get_connected_peers()
    rejected = [r.getMessage() for r in caplog.records if "event=peer_rejected" in r.getMessage()]
    assert any(_peer_id("rogue") in m for m in rejected)
    assert any(_peer_id("stranger") in m for m in rejected)


async def test_garbage_frame_closes_stream_and_transport_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="dmchain.transport")
    names = ["a", "b", "c"]
    members, transports, inboxes = _cluster(names)
    a, b = transports["a"], transports["b"]
    # Member "c" is played by a bare libp2p host that can write anything.
    c_host = new_host(key_pair=_key("c"))
    a_id = ID.from_base58(members["a"].peer_id)
    async with trio.open_nursery() as nursery:
        await _start(nursery, a)
        await _start(nursery, b)
        async with c_host.run([multiaddr.Multiaddr(members["c"].multiaddr)]):
            with trio.fail_after(WAIT_S):
                await c_host.connect(PeerInfo(a_id, [multiaddr.Multiaddr(members["a"].multiaddr)]))
                bad = await c_host.new_stream(a_id, [FRAMES_PROTOCOL])
                # A valid frame, then a length prefix far above the frame limit.
                await bad.write(encode_frames([b"first"]) + b"\xff\xff\xff\xffgarbage")
            await _wait_until(lambda: a.metrics.bad_frames == 1, "bad frame detected")
            with trio.fail_after(WAIT_S):
                with pytest.raises(Exception):  # a reset surfaces as a libp2p error
                    while True:
                        if not await bad.read(1):
                            raise EOFError("closed")
            # The same member may open a new, well-formed stream and is served.
            with trio.fail_after(WAIT_S):
                good = await c_host.new_stream(a_id, [FRAMES_PROTOCOL])
                await good.write(encode_frames([b"second", b"third"]))
            await _wait_until(lambda: len(inboxes["a"].frames["c"]) == 3, "frames from c")
        assert b.send("a", b"still here")
        await _wait_until(lambda: inboxes["a"].frames["b"] == [b"still here"], "frame from b")
        nursery.cancel_scope.cancel()
    assert inboxes["a"].frames["c"] == [b"first", b"second", b"third"]
    assert any(
        "event=bad_frame" in r.getMessage() and "peer=c" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize("restarted", ["a", "b"])
async def test_reconnects_after_peer_restarts(restarted: str) -> None:
    # Of the pair exactly one side dials; restarting either must reconnect.
    members, transports, inboxes = _cluster(["a", "b"])
    stayer = "b" if restarted == "a" else "a"
    assert transports["a"]._peers["b"].is_dialer != transports["b"]._peers["a"].is_dialer
    kept = transports[stayer]
    async with trio.open_nursery() as nursery:
        await _start(nursery, kept)
        running = await _start(nursery, transports[restarted])
        assert kept.send(restarted, b"before")
        await _wait_until(lambda: inboxes[restarted].frames[stayer] == [b"before"], "first frame")
        # A real restart is a new process after the old one exited: wait for
        # the old instance to be gone before binding its port again.
        await running.stop()
        await _wait_until(lambda: kept.get_connected_peers() == [], "peer seen gone")
        # Frames queued while the peer is down are delivered once it is back.
        for i in range(20):
            assert kept.send(restarted, b"while down %d" % i)
        new_inbox = Inbox()
        new = Transport(_key(restarted), members[restarted].multiaddr, members, new_inbox, FAST)
        await _start(nursery, new)
        await _wait_until(lambda: len(new_inbox.frames[stayer]) == 20, "frames after restart")
        assert new.send(stayer, b"hello again")
        await _wait_until(lambda: inboxes[stayer].frames[restarted] == [b"hello again"], "reply")
        nursery.cancel_scope.cancel()
    assert new_inbox.frames[stayer] == [b"while down %d" % i for i in range(20)]
    assert kept.metrics.reconnects >= 1


async def test_second_transport_on_a_busy_port_fails_loudly() -> None:
    members, transports, _ = _cluster(["a", "b"])
    twin = Transport(_key("a"), members["a"].multiaddr, members, Inbox(), FAST)
    async with trio.open_nursery() as nursery:
        await _start(nursery, transports["a"])
        with pytest.raises(TransportError, match="cannot listen"):
            await twin.run()
        nursery.cancel_scope.cancel()


async def test_heartbeats_keep_idle_members_connected() -> None:
    limits = TransportLimits(
        heartbeat_interval=0.05, idle_timeout=1.0, reconnect_initial_delay=0.02,
        reconnect_max_delay=0.2,
    )
    _, transports, inboxes = _cluster(["a", "b"], limits)
    async with trio.open_nursery() as nursery:
        for transport in transports.values():
            await _start(nursery, transport)
        await _wait_until(lambda: _all_connected(transports), "connections")
        await _wait_until(
            lambda: all(t.metrics.heartbeats_out >= 30 for t in transports.values()),
            "heartbeats",
        )
        assert _all_connected(transports)
        nursery.cancel_scope.cancel()
    for name, transport in transports.items():
        assert transport.metrics.idle_disconnects == 0, name
        assert transport.metrics.reconnects == 0, name
        assert transport.metrics.frames_in == 0, name
        assert not inboxes[name].frames, name


async def test_silent_member_is_disconnected(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="dmchain.transport")
    limits = TransportLimits(
        heartbeat_interval=0.05, idle_timeout=0.3, reconnect_initial_delay=0.02,
        reconnect_max_delay=0.2,
    )
    members, transports, _ = _cluster(["a", "c"], limits)
    a = transports["a"]
    # Member "c" is a bare host that accepts a's stream but never writes back.
    c_host = new_host(key_pair=_key("c"))
    received: list[bytes] = []

    async def swallow(stream: Any) -> None:
        while chunk := await stream.read(65536):
            received.append(chunk)

    c_host.set_stream_handler(FRAMES_PROTOCOL, swallow)
    async with trio.open_nursery() as nursery, c_host.run(
        [multiaddr.Multiaddr(members["c"].multiaddr)]
    ):
        await _start(nursery, a)
        await _wait_until(lambda: a.metrics.idle_disconnects >= 1, "idle disconnect")
        await _wait_until(lambda: a.metrics.reconnects >= 1, "reconnect attempt")
        nursery.cancel_scope.cancel()
    assert a.metrics.heartbeats_out >= 1
    assert any(
        "event=peer_idle" in r.getMessage() and "peer=c" in r.getMessage() for r in caplog.records
    )


async def test_silent_member_is_disconnected_while_frames_keep_going_to_it() -> None:
    limits = TransportLimits(
        heartbeat_interval=0.05, idle_timeout=0.3, reconnect_initial_delay=0.02,
        reconnect_max_delay=0.2,
    )
    members, transports, _ = _cluster(["a", "c"], limits)
    a = transports["a"]
    c_host = new_host(key_pair=_key("c"))  # accepts a's stream, never writes back

    async def swallow(stream: Any) -> None:
        while await stream.read(65536):
            pass

    async def keep_sending() -> None:
        while True:  # more often than the heartbeat interval: a's writer is never idle
            a.send("c", b"frame")
            await trio.sleep(0.01)

    c_host.set_stream_handler(FRAMES_PROTOCOL, swallow)
    async with trio.open_nursery() as nursery, c_host.run(
        [multiaddr.Multiaddr(members["c"].multiaddr)]
    ):
        await _start(nursery, a)
        nursery.start_soon(keep_sending)
        await _wait_until(lambda: a.metrics.idle_disconnects >= 1, "idle disconnect")
        nursery.cancel_scope.cancel()
    assert a.metrics.frames_out > 0


def test_queue_bounds_and_unknown_peers() -> None:
    members = {
        "a": Member(_peer_id("a"), "/ip4/127.0.0.1/tcp/1"),
        "b": Member(_peer_id("b"), "/ip4/127.0.0.1/tcp/2"),
    }
    limits = TransportLimits(max_queue_frames=5, max_queue_bytes=1000, max_frame_size=400)
    a = Transport(_key("a"), "/ip4/127.0.0.1/tcp/0", members, Inbox(), limits)
    assert a.name == "a"
    assert a.get_peer_names() == ["b"]
    for _ in range(5):
        assert a.send("b", b"x" * 10)
    assert not a.send("b", b"x")  # frame bound
    assert a.get_queue_size("b") == 5
    assert a.metrics.drops == 1
    assert not a.send("nobody", b"x")
    assert not a.send("a", b"x")  # self
    assert a.metrics.drops == 3
    assert a.metrics.as_dict()["drops"] == 3

    a2 = Transport(_key("a"), "/ip4/127.0.0.1/tcp/0", members, Inbox(), limits)
    assert a2.send("b", b"y" * 400)
    assert a2.send("b", b"y" * 400)
    assert not a2.send("b", b"y" * 201)  # byte bound: 1000 bytes
    assert a2.send("b", b"y" * 200)
    assert a2.broadcast(b"z") == 0  # queue is full in bytes
    assert a2.metrics.drops == 2
    with pytest.raises(FrameError):
        a2.send("b", b"y" * 401)
    with pytest.raises(FrameError):
        a2.send("b", b"")


def test_configuration_errors_are_typed() -> None:
    good = {"a": (_peer_id("a"), "/ip4/127.0.0.1/tcp/1")}
    with pytest.raises(TransportError):
        Transport(_key("a"), "/ip4/127.0.0.1/tcp/0", {"a": ("not-a-peer-id", "/ip4/1.2.3.4/tcp/1")},
                  Inbox())
    with pytest.raises(TransportError):
        Transport(_key("a"), "not a multiaddr", good, Inbox())
    with pytest.raises(TransportError):
        Transport(_key("a"), "/ip4/127.0.0.1/tcp/0",
                  {"a": good["a"], "b": good["a"]}, Inbox())
    with pytest.raises(TransportError):
        Transport(_key("a"), "/ip4/127.0.0.1/tcp/0", good, Inbox(),
                  TransportLimits(max_frame_size=8 * 1024 * 1024))
    with pytest.raises(TransportError):
        Transport(_key("a"), "/ip4/127.0.0.1/tcp/0", good, Inbox(),
                  TransportLimits(heartbeat_interval=1.0, idle_timeout=1.5))


async def test_crash_in_frame_handler_propagates_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)
    _, transports, _ = _cluster(["a", "b"])

    def explode(sender: str, frames: list[bytes]) -> None:
        raise RuntimeError("handler bug")

    transports["b"].on_frames = explode
    with pytest.raises(BaseExceptionGroup) as info, trio.fail_after(WAIT_S):
        async with trio.open_nursery() as nursery:
            await _start(nursery, transports["a"])
            await _start(nursery, transports["b"])
            assert transports["a"].send("b", b"boom")
            await trio.sleep_forever()
    assert info.group_contains(RuntimeError, match="handler bug")
    assert any("event=task_crashed" in r.getMessage() for r in caplog.records)


async def test_window_credit_is_returned_in_batches_and_never_stalls_a_sender(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Thousands of small writes (3 MiB, twelve times the initial window) arrive in
    order, with one WINDOW_UPDATE per half window consumed instead of one per read."""
    updates: list[int] = []
    original = yamux.YamuxStream.send_window_update

    async def counted(self: Any, increment: int, skip_lock: bool = False) -> None:
        updates.append(increment)
        await original(self, increment, skip_lock)

    monkeypatch.setattr(yamux.YamuxStream, "send_window_update", counted)
    _, transports, inboxes = _cluster(["a", "b"])
    count, size = 3_000, 1_024
    async with trio.open_nursery() as nursery:
        for transport in transports.values():
            await _start(nursery, transport)
        await _wait_until(lambda: _all_connected(transports), "connected")
        updates.clear()
        for i in range(count):
            transports["a"].send("b", i.to_bytes(4, "big") + bytes(size - 4))
            await trio.sleep(0)  # let the writer go: many separate writes and reads
        await _wait_until(lambda: len(inboxes["b"].frames["a"]) == count, "all frames")
        nursery.cancel_scope.cancel()
    got = [int.from_bytes(f[:4], "big") for f in inboxes["b"].frames["a"]]
    assert got == list(range(count))
    assert transports["b"].metrics.reads > 100
    # ~3 MiB of frames in 128 KiB credits: about 24 updates, not one per read.
    assert len(updates) <= 3 * count * size // (128 * 1024)
    assert all(increment >= 128 * 1024 for increment in updates)


def test_compute_release_keeps_every_byte_of_credit() -> None:
    window = 256 * 1024
    pending = 0
    released = 0
    for read in [1, 500, 64 * 1024, 70 * 1024, 3, 200 * 1024, 0]:
        increment, after = compute_release(pending, read, window)
        assert increment + after == pending + read
        assert increment == 0 or increment >= window // 2
        released += increment
        pending = after
    assert released + pending == 1 + 500 + 134 * 1024 + 3 + 200 * 1024


async def test_before_write_hook_runs_before_every_batch_is_written() -> None:
    """The node makes its consensus records durable in this hook: no batch may be
    written without it having run first."""
    _, transports, inboxes = _cluster(["a", "b"])
    a = transports["a"]
    calls: list[int] = []
    hooked: list[bytes] = []

    async def record_and_yield(frames: list[bytes]) -> None:
        calls.append(a.metrics.writes)
        hooked.extend(frames)
        await trio.sleep(0)  # a hook may yield to other tasks before returning

    a.before_write = record_and_yield
    async with trio.open_nursery() as nursery:
        for transport in transports.values():
            await _start(nursery, transport)
        for i in range(50):
            a.send("b", f"frame {i}".encode())
            await trio.sleep(0.001)
        await _wait_until(lambda: len(inboxes["b"].frames["a"]) == 50, "all frames")
        nursery.cancel_scope.cancel()
    # Called once per batch, each time before that batch's write was counted.
    assert a.metrics.writes > 0
    assert calls == list(range(a.metrics.writes))
    # The hook saw each batch's frames: every frame, in order, once.
    assert hooked == [f"frame {i}".encode() for i in range(50)]
