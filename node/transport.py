"""Permissioned peer-to-peer transport for a consortium of known members.

One py-libp2p host (TCP, Noise, yamux only) per node. Every member gets one
long-lived outbound stream on protocol ``/dmchain/frames/1.0.0``, fed from a
bounded per-peer queue by a writer task that drains everything queued (up to
``max_batch_bytes``) into ONE ``write()`` of length-prefixed frames: batching
is what makes py-libp2p fast enough (one write per message tops out near 4k
msg/s; batched writes reach hundreds of thousands).

Inbound streams are read with a buffered :class:`node.framing.FrameDecoder`;
each read's complete frames are handed to ``on_frames(sender_name, frames)``
synchronously, so the callback must be cheap (put them in a bounded queue).

Permissioning: the Noise handshake authenticates the remote peer ID; a
connection or stream from a peer ID that is not a member is closed, logged
and counted. A member whose stream carries a malformed or oversized frame has
that stream reset (logged, counted); the member's writer reconnects.

Liveness: a writer that wrote nothing for about ``heartbeat_interval`` sends a
heartbeat (a zero-length frame), woken by one timer task for all peers; a
connected member that sends nothing for ``idle_timeout`` has its connection
closed and redialled.

Write-ahead hook: ``before_write``, when given, is awaited with the frames of
a batch before that batch is written, in the writer task. The node makes its
consensus records durable there when the batch holds a consensus frame, so a
vote never reaches a peer before the record that forbids a conflicting vote
is on disk, and all records of a burst of messages share one synced write.

Delivery is at most once and in order per peer: a batch whose write fails is
dropped (counted in ``metrics.frames_lost``), never resent, so the receiver
never sees duplicates. Consensus retransmits what it needs.

Every task runs under :mod:`node.tasks` supervision: a bug raises out of
:meth:`Transport.run` with its traceback logged; network errors from the
library are expected and handled by reconnecting with exponential backoff.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.rcmgr import ResourceManager
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from node.framing import (
    HEARTBEAT,
    MAX_FRAME_SIZE_LIMIT,
    FrameDecoder,
    FrameError,
    check_max_frame_size,
    compute_framed_size,
    encode_frames,
)
from node.tasks import start_supervised
from node.tcp_read_buffer import install_buffered_tcp_reads
from node.yamux_window import install_batched_window_updates

logger = logging.getLogger("dmchain.transport")

FRAMES_PROTOCOL = TProtocol("/dmchain/frames/1.0.0")

_CLOSE_TIMEOUT_S = 2.0

OnFrames = Callable[[str, list[bytes]], None]


class TransportError(Exception):
    """The transport was configured wrongly (bad member table, bad limits)."""


class PeerIOError(Exception):
    """A network operation with one peer failed (dial, stream, read or write)."""


class PeerIdleError(PeerIOError):
    """Nothing, not even a heartbeat, arrived from a connected peer for too long."""


@dataclass(frozen=True)
class Member:
    """A consortium member: its libp2p peer ID (base58) and a dialable multiaddr."""

    peer_id: str
    multiaddr: str


@dataclass(frozen=True)
class TransportLimits:
    """Bounds of the transport. Sizes in bytes, delays in seconds.

    ``dial_timeout`` covers connect + Noise + yamux + protocol negotiation. It
    is generous on purpose: with 18 members starting at once on 2 busy cores,
    5 s made every handshake time out and be retried (no member connected
    within 100 s), while 20 s let all of them connect in 9-12 s.
    """

    max_frame_size: int = 1024 * 1024
    max_queue_frames: int = 20_000
    max_queue_bytes: int = 32 * 1024 * 1024
    max_batch_bytes: int = 64 * 1024
    read_chunk_size: int = 256 * 1024
    dial_timeout: float = 20.0
    reconnect_initial_delay: float = 0.05
    reconnect_max_delay: float = 2.0
    heartbeat_interval: float = 3.0
    idle_timeout: float = 10.0

    def check(self) -> None:
        """Raise :class:`TransportError` unless every bound is usable."""
        try:
            check_max_frame_size(self.max_frame_size)
        except ValueError as exc:
            raise TransportError(str(exc)) from exc
        if self.max_queue_frames < 1 or self.max_queue_bytes < 1:
            raise TransportError("queue bounds must be positive")
        if self.max_queue_bytes < self.max_frame_size:
            raise TransportError("max_queue_bytes must hold at least one maximal frame")
        if not 1 <= self.max_batch_bytes <= 4 * MAX_FRAME_SIZE_LIMIT:
            raise TransportError("max_batch_bytes must be in [1, 16 MiB]")
        if self.read_chunk_size < 1:
            raise TransportError("read_chunk_size must be positive")
        if not 0 < self.reconnect_initial_delay <= self.reconnect_max_delay:
            raise TransportError("need 0 < reconnect_initial_delay <= reconnect_max_delay")
        if self.dial_timeout <= 0:
            raise TransportError("dial_timeout must be positive")
        if not 0 < 2 * self.heartbeat_interval < self.idle_timeout:
            raise TransportError("need 0 < 2 * heartbeat_interval < idle_timeout")


@dataclass
class TransportMetrics:
    """Plain monotonically increasing counters (bytes include length prefixes)."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    writes: int = 0
    reads: int = 0
    drops: int = 0
    frames_lost: int = 0
    bad_frames: int = 0
    rejected_peers: int = 0
    reconnects: int = 0
    connects: int = 0
    heartbeats_out: int = 0
    idle_disconnects: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return a snapshot of every counter by name."""
        return dict(vars(self))


@dataclass
class _Peer:
    name: str
    peer_id: ID
    addr: multiaddr.Multiaddr
    queue: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    wakeup: trio.Event = field(default_factory=trio.Event)
    is_dialer: bool = True
    connected: bool = False
    inbound: INetStream | None = None
    waiting_since: float | None = None
    connection_ready: trio.Event = field(default_factory=trio.Event)
    last_heard: float = 0.0
    writes: int = 0  # writes to this peer (batches and heartbeats), for the heartbeat loop
    heartbeat_due: bool = False


def compute_members(raw: Mapping[str, Member | tuple[str, str]]) -> dict[str, Member]:
    """Return the member table with tuples converted; raise TransportError if invalid.

    Each name maps to a distinct, parseable peer ID and multiaddr.
    """
    members: dict[str, Member] = {}
    seen: dict[str, str] = {}
    for name, entry in raw.items():
        member = entry if isinstance(entry, Member) else Member(*entry)
        if not name:
            raise TransportError("member name must be non-empty")
        try:
            ID.from_base58(member.peer_id)
            multiaddr.Multiaddr(member.multiaddr)
        except Exception as exc:  # the library parsers raise assorted types
            raise TransportError(f"member {name}: invalid peer ID or multiaddr: {exc}") from exc
        if member.peer_id in seen:
            raise TransportError(f"members {seen[member.peer_id]} and {name} share a peer ID")
        seen[member.peer_id] = name
        members[name] = member
    return members


def check_listen_port_free(addr: multiaddr.Multiaddr) -> None:
    """Raise TransportError if another socket already listens on ``addr``'s TCP port.

    py-libp2p binds its listeners with SO_REUSEPORT, so a second node started
    on the same port would bind silently and the kernel would split incoming
    connections between the two. A plain probe bind (SO_REUSEADDR only, which
    tolerates TIME_WAIT leftovers of a previous run) fails while any socket
    listens there. Port 0 and non-TCP addresses are not checked.
    """
    protocols = {p.name for p in addr.protocols()}
    if "tcp" not in protocols:
        return
    port = int(addr.value_for_protocol("tcp"))
    if port == 0:
        return
    if "ip6" in protocols:
        family, host = socket.AF_INET6, str(addr.value_for_protocol("ip6"))
    elif "ip4" in protocols:
        family, host = socket.AF_INET, str(addr.value_for_protocol("ip4"))
    else:
        return
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise TransportError(f"cannot listen on {addr}: {exc.strerror or exc}") from exc


def is_dialer(own_peer_id: str, remote_peer_id: str) -> bool:
    """Return True iff this side should dial: the smaller base58 peer ID dials."""
    return own_peer_id < remote_peer_id


class Transport:
    """Direct, batched, length-prefixed frame streams between consortium members."""

    def __init__(
        self,
        identity: KeyPair,
        listen_multiaddr: str,
        members: Mapping[str, Member | tuple[str, str]],
        on_frames: OnFrames,
        limits: TransportLimits | None = None,
        before_write: Callable[[list[bytes]], Awaitable[None]] | None = None,
    ) -> None:
        self.limits = limits or TransportLimits()
        # Awaited before any batch of frames goes on the wire.
        self.before_write = before_write
        self.limits.check()
        install_batched_window_updates()
        install_buffered_tcp_reads()
        self.identity = identity
        self.peer_id = ID.from_pubkey(identity.public_key)
        try:
            self.listen_multiaddr = multiaddr.Multiaddr(listen_multiaddr)
        except Exception as exc:  # the parser raises assorted types
            raise TransportError(f"invalid listen multiaddr {listen_multiaddr!r}: {exc}") from exc
        self.members = compute_members(members)
        self.on_frames = on_frames
        self.metrics = TransportMetrics()
        self.name: str | None = None
        self._peers: dict[str, _Peer] = {}
        self._names_by_peer_id: dict[str, str] = {}
        own = self.peer_id.to_base58()
        for name, member in self.members.items():
            self._names_by_peer_id[member.peer_id] = name
            if member.peer_id == own:
                self.name = name
                continue
            self._peers[name] = _Peer(
                name=name,
                peer_id=ID.from_base58(member.peer_id),
                addr=multiaddr.Multiaddr(member.multiaddr),
                is_dialer=is_dialer(own, member.peer_id),
            )
        # Members, a few duplicate connections from simultaneous dials, and
        # room for rejected strangers while they are being closed.
        self._max_connections = 4 * len(self.members) + 64
        self._host: IHost | None = None
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------ API

    def send(self, name: str, frame: bytes) -> bool:
        """Queue ``frame`` for member ``name`` without blocking.

        Returns False and counts a drop when ``name`` is not a peer (unknown or
        self) or its queue is full in frames or bytes. Raises FrameError when
        the frame is empty or longer than ``limits.max_frame_size``.
        """
        size = len(frame)
        if size == 0 or size > self.limits.max_frame_size:
            raise FrameError(f"frame of {size} bytes is outside [1, {self.limits.max_frame_size}]")
        peer = self._peers.get(name)
        if peer is None:
            self.metrics.drops += 1
            return False
        if (
            len(peer.queue) >= self.limits.max_queue_frames
            or peer.queued_bytes + size > self.limits.max_queue_bytes
        ):
            self.metrics.drops += 1
            return False
        peer.queue.append(frame)
        peer.queued_bytes += size
        peer.wakeup.set()
        return True

    def broadcast(self, frame: bytes) -> int:
        """Queue ``frame`` for every member but self; return how many accepted it."""
        return sum(self.send(name, frame) for name in self._peers)

    def get_connected_peers(self) -> list[str]:
        """Return the sorted names of members with an open outbound stream."""
        return sorted(name for name, peer in self._peers.items() if peer.connected)

    def get_peer_names(self) -> list[str]:
        """Return the sorted names of every member except self."""
        return sorted(self._peers)

    def get_queue_size(self, name: str) -> int:
        """Return the number of frames queued for ``name`` (0 if unknown)."""
        peer = self._peers.get(name)
        return len(peer.queue) if peer is not None else 0

    def get_listen_addrs(self) -> list[str]:
        """Return the addresses the running host listens on (empty before start)."""
        if self._host is None:
            return []
        return [str(addr) for addr in self._host.get_transport_addrs()]

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start the host, serve and dial members until cancelled.

        ``task_status.started()`` is called once the host listens and the
        stream handler is installed. Any bug in a transport task raises out of
        this call (after being logged with its traceback).
        """
        check_listen_port_free(self.listen_multiaddr)
        host = new_host(
            key_pair=self.identity,
            sec_opt={
                NOISE_PROTOCOL_ID: NoiseTransport(
                    self.identity, noise_privkey=create_new_x25519_key_pair().private_key
                )
            },
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            connection_config=ConnectionConfig(
                max_connections_per_peer=1,
                min_connections=0,
                low_watermark=0,
                high_watermark=self._max_connections,
                max_connections=self._max_connections,
            ),
            listen_addrs=[self.listen_multiaddr],
            resource_manager=_new_resource_manager(),
        )
        # Shutdown order matters: first stop our own writers and readers (so
        # nothing redials), then close every connection while the swarm is
        # still alive (peers see us leave at once), and only then stop the
        # swarm's tasks. The host runs under a shielded scope to allow this.
        host_scope = trio.CancelScope(shield=True)
        work_scope = trio.CancelScope()
        try:
            async with trio.open_nursery() as outer:
                await outer.start(self._run_host, host, host_scope, work_scope)
                task_status.started()
                try:
                    await trio.sleep_forever()
                finally:
                    work_scope.cancel()
                    with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT_S):
                        await _close_host_quietly(host)
                    host_scope.cancel()
        finally:
            for peer in self._peers.values():
                peer.connected = False
                peer.inbound = None
            self._host = None
            self._nursery = None
            logger.info("event=transport_stopped peer_id=%s", self.peer_id)

    async def _run_host(
        self,
        host: IHost,
        host_scope: trio.CancelScope,
        work_scope: trio.CancelScope,
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the host in ``host_scope`` and our peer tasks in ``work_scope``."""
        with host_scope:
            self._host = host
            host.get_network().register_notifee(_MemberGate(self))
            host.set_stream_handler(FRAMES_PROTOCOL, self._handle_stream)
            async with host.run([self.listen_multiaddr]):
                await _stop_auto_connector(host)
                logger.info(
                    "event=transport_started peer_id=%s name=%s addrs=%s",
                    self.peer_id,
                    self.name,
                    self.get_listen_addrs(),
                )
                with work_scope:
                    try:
                        async with trio.open_nursery() as work:
                            self._nursery = work
                            for peer in self._peers.values():
                                start_supervised(
                                    work, f"transport.peer.{peer.name}", self._run_peer, peer,
                                    forever=True,
                                )
                            start_supervised(
                                work, "transport.heartbeats", self._heartbeat_loop, forever=True
                            )
                            task_status.started()
                            await trio.sleep_forever()
                    finally:
                        self._nursery = None
                await trio.sleep_forever()  # until run() has closed the host

    # -------------------------------------------------------------- writers

    async def _run_peer(self, peer: _Peer) -> None:
        """Keep one outbound stream to ``peer`` open and feed it; never returns."""
        delay = self.limits.reconnect_initial_delay
        first = True
        while True:
            try:
                stream = await self._open_stream(peer)
            except PeerIOError as exc:
                logger.debug("event=dial_failed peer=%s error=%s", peer.name, exc)
                # Back off, but retry at once when the peer connects to us.
                with trio.move_on_after(delay):
                    await peer.connection_ready.wait()
                delay = min(delay * 2, self.limits.reconnect_max_delay)
                continue
            delay = self.limits.reconnect_initial_delay
            if not first:
                self.metrics.reconnects += 1
            first = False
            self.metrics.connects += 1
            peer.connected = True
            peer.heartbeat_due = False
            peer.last_heard = trio.current_time()
            logger.info("event=peer_connected peer=%s", peer.name)
            idle = False
            try:
                async with trio.open_nursery() as conn_nursery:
                    start_supervised(
                        conn_nursery, f"transport.watch.{peer.name}", self._watch_stream,
                        peer, stream, conn_nursery.cancel_scope,
                    )
                    await self._write_loop(peer, stream)
            except* PeerIdleError as group:
                idle = True
                self.metrics.idle_disconnects += 1
                logger.warning("event=peer_idle peer=%s error=%s", peer.name, group.exceptions[0])
            except* PeerIOError as group:
                logger.warning(
                    "event=peer_write_failed peer=%s error=%s", peer.name, group.exceptions[0]
                )
            finally:
                peer.connected = False
                with trio.CancelScope(shield=True), trio.move_on_after(_CLOSE_TIMEOUT_S):
                    await _reset_quietly(stream)
                    if idle:
                        # The peer may be gone without a FIN: drop the whole
                        # connection so the next attempt really dials.
                        await _close_peer_quietly(self._require_host(), peer.peer_id)
            logger.info("event=peer_disconnected peer=%s", peer.name)
            await trio.sleep(delay)

    async def _open_stream(self, peer: _Peer) -> INetStream:
        """Open our outbound stream to ``peer``, dialling only if we are its dialer.

        Of each pair of members only one dials (see :func:`is_dialer`), so a
        pair never holds two racing connections; the other side opens its
        stream over that connection, and dials itself only after waiting
        ``2 * reconnect_max_delay`` in vain (the dialer is down or cannot
        reach us).
        """
        host = self._require_host()
        peer.connection_ready = trio.Event()
        now = trio.current_time()
        if peer.waiting_since is None:
            peer.waiting_since = now
        may_dial = peer.is_dialer or now - peer.waiting_since >= 2 * self.limits.reconnect_max_delay
        try:
            with trio.fail_after(self.limits.dial_timeout):
                if may_dial:
                    # The swarm refuses for 60 s to redial a peer whose dial
                    # failed ("negative cache"); our own backoff governs retries.
                    _unblock_peer(host, peer.peer_id)
                    await host.connect(PeerInfo(peer.peer_id, [peer.addr]))
                elif not host.get_network().get_connections(peer.peer_id):
                    raise PeerIOError("waiting for the peer to dial")
                stream = await host.new_stream(peer.peer_id, [FRAMES_PROTOCOL])
        except PeerIOError:
            raise
        except Exception as exc:  # libp2p raises many unrelated types on I/O
            raise PeerIOError(f"{type(exc).__name__}: {exc}") from exc
        peer.waiting_since = None
        return stream

    async def _write_loop(self, peer: _Peer, stream: INetStream) -> None:
        """Drain the queue in batches, one write() per batch, until a write fails.

        An idle writer sleeps on ``peer.wakeup`` with no timer of its own:
        :meth:`_heartbeat_loop` wakes it when a heartbeat is due.
        """
        max_batch = self.limits.max_batch_bytes
        idle_timeout = self.limits.idle_timeout
        while True:
            while not peer.queue and not peer.heartbeat_due:
                peer.wakeup = trio.Event()
                await peer.wakeup.wait()
            if peer.heartbeat_due:
                peer.heartbeat_due = False
                silent = trio.current_time() - peer.last_heard
                if silent > idle_timeout:
                    raise PeerIdleError(f"nothing received for {silent:.1f} s")
                if not peer.queue:
                    await self._write_heartbeat(stream)
                    peer.writes += 1
                    continue
            batch: list[bytes] = []
            wire_bytes = 0
            queue = peer.queue
            while queue and (
                not batch or wire_bytes + compute_framed_size(queue[0]) <= max_batch
            ):
                frame = queue.popleft()
                batch.append(frame)
                wire_bytes += compute_framed_size(frame)
                peer.queued_bytes -= len(frame)
            data = encode_frames(batch, self.limits.max_frame_size)
            if self.before_write is not None:
                await self.before_write(batch)
            written = False
            try:
                await stream.write(data)
                written = True
            except Exception as exc:  # libp2p raises many unrelated types on I/O
                raise PeerIOError(f"{type(exc).__name__}: {exc}") from exc
            finally:
                if not written:  # failed, or cancelled because the stream closed
                    self.metrics.frames_lost += len(batch)
            peer.writes += 1
            self.metrics.writes += 1
            self.metrics.frames_out += len(batch)
            self.metrics.bytes_out += len(data)

    async def _heartbeat_loop(self) -> None:
        """Every half heartbeat interval, wake the writer of each connected peer
        that saw no write since the last pass (it sends a heartbeat, so a stream
        is never silent for much longer than one interval) or that has been
        silent for over ``idle_timeout`` (its writer drops the connection, even
        while it has frames to send).

        One timer for all peers, instead of a timeout around every writer's
        wait, which cost a cancel scope and a deadline per written batch."""
        seen: dict[str, int] = {}
        idle_timeout = self.limits.idle_timeout
        while True:
            await trio.sleep(self.limits.heartbeat_interval / 2)
            now = trio.current_time()
            for name, peer in self._peers.items():
                quiet = seen.get(name) == peer.writes
                if peer.connected and (quiet or now - peer.last_heard > idle_timeout):
                    peer.heartbeat_due = True
                    peer.wakeup.set()
                seen[name] = peer.writes

    async def _write_heartbeat(self, stream: INetStream) -> None:
        try:
            await stream.write(HEARTBEAT)
        except Exception as exc:  # libp2p raises many unrelated types on I/O
            raise PeerIOError(f"{type(exc).__name__}: {exc}") from exc
        self.metrics.heartbeats_out += 1
        self.metrics.bytes_out += len(HEARTBEAT)

    async def _watch_stream(
        self, peer: _Peer, stream: INetStream, scope: trio.CancelScope
    ) -> None:
        """Cancel ``scope`` when the remote closes or resets our outbound stream."""
        try:
            data = await stream.read(1)
        except Exception as exc:  # noqa: BLE001 - libp2p raises many unrelated types on I/O
            logger.info("event=outbound_closed peer=%s error=%s", peer.name, type(exc).__name__)
        else:
            if data:
                logger.warning("event=outbound_protocol_violation peer=%s", peer.name)
            else:
                logger.info("event=outbound_closed peer=%s error=eof", peer.name)
        scope.cancel()

    # -------------------------------------------------------------- readers

    async def _handle_stream(self, stream: INetStream) -> None:
        """libp2p stream handler: admit members, hand the stream to a supervised reader."""
        remote = stream.muxed_conn.peer_id
        name = self._names_by_peer_id.get(remote.to_base58())
        nursery = self._nursery
        if nursery is None:  # shutting down
            await _reset_quietly(stream)
            return
        if name is None or name == self.name:
            self.metrics.rejected_peers += 1
            logger.warning("event=peer_rejected peer_id=%s where=stream", remote)
            await _reset_quietly(stream)
            return
        peer = self._peers[name]
        previous, peer.inbound = peer.inbound, stream
        if previous is not None:
            nursery.start_soon(_reset_quietly, previous)
        done = trio.Event()
        start_supervised(nursery, f"transport.read.{name}", self._read_loop, peer, stream, done)
        await done.wait()

    async def _read_loop(self, peer: _Peer, stream: INetStream, done: trio.Event) -> None:
        """Read frames from a member's stream until it ends or misbehaves."""
        decoder = FrameDecoder(self.limits.max_frame_size)
        chunk_size = self.limits.read_chunk_size
        metrics = self.metrics
        try:
            while True:
                try:
                    chunk = await stream.read(chunk_size)
                except Exception as exc:  # noqa: BLE001 - libp2p raises many unrelated types
                    logger.info(
                        "event=inbound_closed peer=%s error=%s", peer.name, type(exc).__name__
                    )
                    return
                if not chunk:
                    logger.info("event=inbound_closed peer=%s error=eof", peer.name)
                    return
                metrics.reads += 1
                metrics.bytes_in += len(chunk)
                peer.last_heard = trio.current_time()
                frames = decoder.feed(chunk)
                if frames:
                    metrics.frames_in += len(frames)
                    self.on_frames(peer.name, frames)
                if decoder.error is not None:
                    metrics.bad_frames += 1
                    logger.warning("event=bad_frame peer=%s error=%s", peer.name, decoder.error)
                    await _reset_quietly(stream)
                    return
        finally:
            if peer.inbound is stream:
                peer.inbound = None
            done.set()

    # ------------------------------------------------------------ gatekeeping

    def _process_connected(self, conn: INetConn) -> None:
        """Close a new connection whose authenticated peer ID is not a member."""
        remote = conn.muxed_conn.peer_id
        name = self._names_by_peer_id.get(remote.to_base58())
        if name is not None and name != self.name:
            self._peers[name].connection_ready.set()
            return
        self.metrics.rejected_peers += 1
        logger.warning("event=peer_rejected peer_id=%s where=connection", remote)
        if self._nursery is not None:
            self._nursery.start_soon(_close_quietly, conn)

    def _require_host(self) -> IHost:
        if self._host is None:
            raise PeerIOError("transport is not running")
        return self._host


class _MemberGate(INotifee):
    """Network notifee that closes connections from non-members."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        self._transport._process_connected(conn)

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        return None

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        return None

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        return None


async def _stop_auto_connector(host: IHost) -> None:
    """Stop libp2p's auto-connector: a consortium dials its members and no one else.

    By default the swarm keeps dialling every peer in its peerstore to reach a
    connection watermark; here the transport owns all dialling.
    """
    auto_connector = getattr(host.get_network(), "auto_connector", None)
    if auto_connector is not None:
        await auto_connector.stop()


def _new_resource_manager() -> ResourceManager:
    """Return a resource manager without the default circuit breaker and rate limits.

    py-libp2p's default manager opens a circuit breaker for 60 s after five
    failed connection acquisitions and rate-limits connections per peer; a
    consortium whose members restart together trips both and then refuses
    every member for a minute. Membership and the connection cap bound
    what this node accepts instead.
    """
    return ResourceManager(
        enable_circuit_breaker=False,
        enable_graceful_degradation=False,
        enable_rate_limiting=False,
        enable_metrics=False,
    )


def _unblock_peer(host: IHost, peer_id: ID) -> None:
    """Lift py-libp2p's 60 s dial block on ``peer_id`` (no-op if absent)."""
    unblock = getattr(host.get_network(), "unblock_peer", None)
    if unblock is not None:
        unblock(peer_id)


async def _close_host_quietly(host: IHost) -> None:
    try:
        await host.close()
    except Exception as exc:  # best-effort shutdown; the library raises assorted types
        logger.warning("event=host_close_failed error=%s", exc, exc_info=True)


async def _close_peer_quietly(host: IHost, peer_id: ID) -> None:
    try:
        await host.disconnect(peer_id)
    except Exception as exc:  # best-effort cleanup; the library raises assorted types
        logger.debug("event=disconnect_failed peer_id=%s error=%s", peer_id, exc, exc_info=True)


async def _reset_quietly(stream: INetStream) -> None:
    try:
        await stream.reset()
    except Exception as exc:  # noqa: BLE001 - best-effort cleanup of a broken stream
        logger.debug("event=stream_reset_failed error=%s", exc)


async def _close_quietly(conn: INetConn) -> None:
    try:
        await conn.close()
    except Exception as exc:  # noqa: BLE001 - best-effort cleanup of a broken connection
        logger.debug("event=connection_close_failed error=%s", exc)
