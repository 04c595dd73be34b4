"""The validator process: consensus machines, ledger, mempool, network and API in one trio loop.

Transaction path (ARCHITECTURE.md §4): ``POST /v1/tx`` -> stateless checks and
one signature verification -> :class:`~node.mempool.Mempool` -> every
``batch_interval_ms`` a batch goes to every PBFT replica -> each replica
verifies each transaction once into its :class:`~node.txpool.ProposalPool` ->
the leader answers ``RequestProposal`` with a payload -> pre-prepare /
prepare / commit -> ``CommitBlock`` -> every node derives the ledger block from
the payload, applies it, and writes block, receipts, state and certificate in
one LevelDB batch -> receipt *confirmed* -> PoS validators sign the epoch
checkpoint -> *settled*.

Nodes that are not PBFT replicas receive committed blocks pushed by two
replicas each and fetch any gap with a block request; every block they accept
carries a commit certificate they verify against the committee.

Wire frames: one channel byte, then the body (see ``CH_*``). Every frame from
the network is checked; a malformed one is logged and dropped, never fatal.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import plyvel
import trio

from consensus import codec
from consensus.certificate import QuorumCertificate, get_certificate_error
from consensus.checkpoint import SettledCheckpoint, compute_leader_order
from consensus.crypto import compute_hash
from consensus.events import (
    Action,
    Alert,
    BlockExecuted,
    Broadcast,
    CancelTimer,
    CheckpointSettled,
    CommitBlock,
    EmitEvidence,
    MessageReceived,
    Persist,
    ProposalReady,
    RequestProposal,
    Send,
    ServeBlocks,
    SetTimer,
    SettleCheckpoint,
    TimerFired,
    ValidatorSetChanged,
    WorkAvailable,
)
from consensus.invariant import require
from consensus.messages import CommittedBlock, FetchResponse, SettledNotice
from consensus.pbft import PbftConfig, PbftReplica
from consensus.pos import PosConfig, PosValidator
from ledger import queries, schema
from ledger.apply import apply_block
from ledger.block import compute_block
from ledger.chain import Ledger
from ledger.errors import TxError
from ledger.genesis import Genesis, load_genesis
from ledger.records import (
    ACCESS_DELIVERING,
    ACCESS_DISPUTED,
    ACCESS_FAILED,
    ACCESS_GRANTED,
    ACCESS_PENDING,
)
from ledger.store import LevelDBStore
from ledger.tx import TxKind, compute_signed_tx, decode_tx, get_tx_error, is_valid_tx_signature
from node import heap
from node.blobstore import BlobStore
from node.certificate_record import (
    compute_certificate_record,
    get_record_certificate,
    get_record_payload,
)
from node.config import NodeConfig
from node.forwarding import ForwardLog
from node.framing import MAX_FRAME_SIZE_LIMIT
from node.group_store import GroupCommitStore, migrate_consensus_dir
from node.http_api import TxRejectedError, create_app
from node.http_server import serve_http_app
from node.inbox import Inbox, InboxEntry
from node.jobs_doc import get_executor_doc, get_job_doc
from node.keys import NodeKeys
from node.mempool import Mempool, MempoolEntry, MempoolFullError
from node.metrics import NodeMetrics
from node.payload import compute_payload, compute_payload_txs, decode_payload
from node.tasks import run_supervised
from node.tracker import TxTracker
from node.transport import Member, Transport, TransportLimits
from node.txpool import ProposalPool

logger = logging.getLogger("dmchain.node")

CH_PBFT = 1
CH_POS = 2
CH_TXS = 3
TXS_CHANNEL_BYTE = bytes([CH_TXS])
# A transaction batch sent to the PBFT leader alone (see node/forwarding.py): a
# replica that is not the leader of its view passes it on to its leader.
CH_TXS_TO_LEADER = 8
TXS_TO_LEADER_BYTE = bytes([CH_TXS_TO_LEADER])
CH_BLOCK = 4
CH_BLOCK_REQUEST = 5
CH_BLOCK_RESPONSE = 6
CH_SETTLED_REQUEST = 7
# Frames of the consensus state machines: a batch holding one is written only
# after the records persisted before it are durable (_flush_before_write).
CONSENSUS_CHANNEL_BYTES = (bytes([CH_PBFT]), bytes([CH_POS]))

# One tick flushes batches, answers proposals and fires timers. 5 ms cost each idle
# node 6.1 % of a core; 20 ms costs 3.4 % and cut the 18-node p95 at 60 tx/s from
# 3.2 s to 2.1 s on 2 cores (dmchain bench --node-tick-ms).
TICK_S = 0.02
# A node with nothing to do (empty mempool and pool, no frame since its last
# tick) sleeps until a frame, a submitted transaction or its next timer wakes
# it, and at most this long: 50 idle ticks a second were half of an idle
# node's CPU (18 idle nodes took a quarter of the 2-core bench machine).
IDLE_WAIT_MAX_S = 1.0
SYNC_INTERVAL_S = 0.5
REPLICA_PROBE_INTERVALS = 4
MAX_PENDING_BLOCKS = 4_096
MAX_SYNC_BLOCKS = 32
MAX_SYNC_NOTICES = 16
MAX_SETTLED_KEPT = 256
# Entries (one peer's frames of one read) per inbox queue (consensus, batches),
# and frame bytes per queue: a node that falls behind buffers at most this much
# (a maximal frame always fits).
MAX_INBOX = 50_000
MAX_INBOX_BYTES = 64 * 1024 * 1024
require(MAX_INBOX_BYTES >= MAX_FRAME_SIZE_LIMIT, "the inbox must hold a maximal frame")
# Hashes of transactions whose signature this node checked and that no block
# has executed yet (dropped on execution, oldest first past this bound).
VERIFIED_REMEMBERED = 100_000
# Committed hashes a replica's pool remembers, so a copy gossiped late is not
# verified and pooled again (one that is, is dropped for its nonce when
# proposed): for COMMITTED_HORIZON_S, four times the longest forwarding
# escalation delay, and at most 50,000 (about 8 MB; 10 s at 4,750 tx/s). With
# the count bound alone (500,000, then 50,000) each node's memory grew for as
# long as it took to fill: over an hour at 100 tx/s, 13 minutes at 64 tx/s.
COMMITTED_REMEMBERED = 50_000
COMMITTED_HORIZON_S = 120.0
PBFT_WINDOW = 6
# The leader keeps at most this many of its proposals uncommitted. Blocks then
# grow with the round time instead of the tick splitting the load into many
# small blocks, each costing a round of signed votes (then ~2n^2 messages, now
# 5(n-1)): at 60 tx/s on the 18-node bench, 6 in flight gave ~7 tx per block
# and a saturated machine.
MAX_PROPOSALS_IN_FLIGHT = 2
# The second proposal in flight waits for this many transactions; fewer wait for
# the first block to commit. Light load gets one block per round instead of two
# small ones: at 20 tx/s on the 18-node bench, 780 blocks against 840 and
# p50/p95 191/337 ms against 299/477 ms (one 60 s run each).
PIPELINE_MIN_TXS = 32
# A transaction forwarded to the leader alone and not committed after this long
# goes to every replica (node/forwarding.py): four times the recent commit
# latency of this node's transactions, kept between these bounds. The lower
# bound is the PBFT base timeout, so a leader that stopped is replaced after
# about twice that; the factor keeps a loaded cluster, whose commits are slow
# but steady, from sending everything to every replica.
ESCALATE_MIN_S = 2.0
ESCALATE_MAX_S = 30.0
ESCALATE_LATENCY_FACTOR = 4.0
# A leader holds back a transaction whose predecessor (same sender, previous
# nonce) it has not seen for at most this long (node/txpool.py): long enough for
# the predecessor to arrive from the node that forwarded it after a view change
# or an escalation at ESCALATE_MIN_S; a gap that never fills then costs one
# rejected transaction, not a pool that never empties.
NONCE_GAP_WAIT_S = 5.0
PBFT_CHECKPOINT_INTERVAL = 3
# How long a PoS node lets executed blocks wait in memory before its flush
# loop makes them durable: its ledger's durability lag, which lets the blocks
# of that time share one fsync (the event loop waits for each, 1-16 ms of wall
# time on the 18-node bench). A replica flushes at once: a flush that starts
# later can hold up the vote of the next round behind its fsync.
FLUSH_DELAY_S = 0.25
# View changes carry prepared payloads: (2f+1) view changes x 2 windows x payload
# must stay under the codec limit (4 MiB); 7 x 12 x 40 KiB = 3.4 MiB.
MAX_PAYLOAD = 40 * 1024
# Progress timeout before a view change. 500 ms caused view-change storms when
# 18 nodes share 2 cores (a round took longer); 2 s stopped them in the bench.
PBFT_BASE_TIMEOUT_MS = 2_000
PBFT_MAX_TIMEOUT_MS = 16_000


def is_consensus_batch(frames: list[bytes]) -> bool:
    """Return True iff a batch of outgoing frames holds a PBFT or PoS frame."""
    return any(frame[:1] in CONSENSUS_CHANNEL_BYTES for frame in frames)


class NodeError(RuntimeError):
    """The node cannot start: bad genesis, keys not in genesis, unusable data dir."""


class Node:
    """One validator node. Construct, then ``await node.run()`` inside trio."""

    def __init__(self, config: NodeConfig, keys: NodeKeys) -> None:
        self.config = config
        self.keys = keys
        try:
            self.genesis: Genesis = load_genesis(str(config.genesis_path))
        except Exception as exc:
            raise NodeError(f"cannot load genesis {config.genesis_path}: {exc}") from exc
        self.chain_id = self.genesis.chain_id
        self.public_key = keys.get_account_public_key()
        self.params = self.genesis.params
        by_key = {v.consensus_key: v for v in self.genesis.validators}
        me = by_key.get(self.public_key)
        if me is None:
            raise NodeError(
                f"this node's key {self.public_key.hex()} is not a validator in the genesis"
            )
        if me.peer_id != keys.get_peer_id():
            raise NodeError("the genesis lists another libp2p peer ID for this node's key")
        self.name = me.name
        self.roles = me.roles
        genesis_hash = self.genesis.genesis_hash()
        pbft_stakes = {
            v.consensus_key: v.stake for v in self.genesis.validators if "pbft" in v.roles
        }
        pos_stakes = {v.consensus_key: v.stake for v in self.genesis.validators if "pos" in v.roles}
        if not pbft_stakes or not pos_stakes:
            raise NodeError("the genesis needs at least one pbft and one pos validator")
        self.committee = compute_leader_order(pbft_stakes, genesis_hash)
        self.names_by_key = {v.consensus_key: v.name for v in self.genesis.validators}
        self.committee_names = [self.names_by_key[k] for k in self.committee]
        self.all_names = [v.name for v in self.genesis.validators]
        self.followers = [n for n in self.all_names if n not in self.committee_names]
        self.is_replica = self.public_key in pbft_stakes
        self.f = (len(self.committee) - 1) // 3

        data = config.data_path
        data.mkdir(parents=True, exist_ok=True)
        try:
            # The ledger and the consensus records share one store and one
            # fsync per flush (node/group_store.py).
            self.store = GroupCommitStore(LevelDBStore(str(data / "ledger")))
            migrated = migrate_consensus_dir(data / "consensus", self.store, schema.NODE_RECORD)
        except plyvel.Error as exc:
            raise NodeError(f"cannot open the data directory {data}: {exc}") from exc
        if migrated:
            logger.info("event=consensus_records_migrated records=%d", migrated)
        self.ledger = Ledger(self.store, self.genesis)
        self.store.flush()  # genesis, on a new data directory
        restored = {
            k[len(schema.NODE_RECORD) :].decode(): v
            for k, v in self.store.iterate(schema.NODE_RECORD)
        }

        self.pbft: PbftReplica | None = None
        if self.is_replica:
            self.pbft_config = PbftConfig(
                chain_id=self.chain_id,
                committee=self.committee,
                window=PBFT_WINDOW,
                checkpoint_interval=PBFT_CHECKPOINT_INTERVAL,
                max_payload=MAX_PAYLOAD,
                base_timeout_ms=PBFT_BASE_TIMEOUT_MS,
                max_timeout_ms=PBFT_MAX_TIMEOUT_MS,
            )
            pbft_records = {k: v for k, v in restored.items() if k.startswith("pbft/")}
            self.pbft = PbftReplica(self.pbft_config, keys.account_seed, pbft_records or None)
        pos_records = {k: v for k, v in restored.items() if k.startswith("pos/")}
        self.pos = PosValidator(
            PosConfig(
                chain_id=self.chain_id,
                epoch_length=self.params.epoch_length,
                genesis_validators=pos_stakes,
                genesis_hash=genesis_hash,
                committee_size=len(self.committee),
            ),
            keys.account_seed if self.public_key in pos_stakes else None,
            pos_records or None,
        )
        self.pos_names = sorted(self.all_names)
        self.pos_index = {name: i for i, name in enumerate(self.pos_names)}

        limits = config.limits
        self.mempool = Mempool(
            limits.mempool_max_txs, limits.mempool_max_bytes, limits.mempool_max_per_sender
        )
        self.pool = ProposalPool(
            limits.mempool_max_txs, COMMITTED_REMEMBERED, COMMITTED_HORIZON_S
        )
        self.forwards = ForwardLog(limits.mempool_max_txs)
        # The highest view this node has seen certified (replicas use their own).
        self._certified_view = 0
        self._forward_view = 0
        self._commit_latency_s = 0.0
        self.tracker = TxTracker()
        self.metrics = NodeMetrics(self.name)
        self.max_body_bytes = limits.http_max_body_bytes
        self._verified: OrderedDict[bytes, None] = OrderedDict()
        self._pending_blocks: dict[int, tuple[bytes, QuorumCertificate]] = {}
        self._flush_wanted = trio.Event()
        self._flush_delay_s = 0.0 if self.is_replica else FLUSH_DELAY_S
        self._tick_wake = trio.Event()
        self._activity = True
        self._requested_seqs: list[int] = []
        self._timers: dict[tuple[str, str], tuple[float, int]] = {}
        self._work_pending = False
        self._empty_block_interval_s = limits.empty_block_interval_ms / 1000
        self._last_proposal_at = 0.0
        self._empty_block_due_at: float | None = None
        self._last_tx_height = self.ledger.state.height
        self._last_view = self.pbft.view if self.pbft else 0
        self._logged_view = (self.pbft.view, self.pbft.in_view_change) if self.pbft else (0, False)
        # A replica whose process died after persisting its progress but before the
        # ledger batch restarts with the replica ahead of the ledger: fetch the gap.
        self._known_height = max(self.ledger.state.height, self.pbft.executed if self.pbft else 0)
        self._sync_cursor = 0
        self._evidence_seen: set[bytes] = set()
        self._settled_unmapped: dict[int, bytes] = {}
        self._settled_checkpoints: OrderedDict[int, SettledCheckpoint] = OrderedDict()
        self._own_nonce = queries.get_account(self.ledger.state, self.public_key).nonce
        self._inbox = Inbox(MAX_INBOX, MAX_INBOX_BYTES)
        self._inbox_ready = trio.Event()
        self._inbox_dropped = 0
        members = {v.name: Member(v.peer_id, v.multiaddr) for v in self.genesis.validators}
        self.transport = Transport(
            keys.get_identity_key_pair(),
            f"/ip4/{config.listen_host}/tcp/{config.p2p_port}",
            members,
            self._on_frames,
            before_write=self._flush_before_write,
            limits=TransportLimits(
                max_frame_size=limits.max_frame_bytes,
                max_queue_frames=limits.peer_queue_frames,
                max_queue_bytes=max(64 * 1024 * 1024, limits.max_frame_bytes),
            ),
        )
        self.metrics.register_transport(self.transport.metrics.as_dict)
        self.started_ms = int(time.time() * 1000)
        self._http_ready = False

    # ---------------------------------------------------------------- lifecycle

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled or SIGTERM/SIGINT; closes the stores on the way out."""
        logger.info(
            "event=node_starting name=%s roles=%s height=%d replica=%s",
            self.name,
            ",".join(self.roles),
            self.ledger.state.height,
            self.is_replica,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_signals, nursery.cancel_scope)
                await nursery.start(self.transport.run)
                nursery.start_soon(run_supervised, "inbox", self._inbox_loop)
                nursery.start_soon(run_supervised, "tick", self._tick_loop)
                nursery.start_soon(run_supervised, "sync", self._sync_loop)
                nursery.start_soon(run_supervised, "flush", self._flush_loop)
                if heap.is_trim_available():
                    nursery.start_soon(run_supervised, "heap", self._heap_loop)
                app = create_app(self)
                config = self.config
                await nursery.start(serve_http_app, app, config.http_host, config.http_port)
                self._http_ready = True
                self._execute_actions("pbft", self.pbft.start() if self.pbft else [])
                self._execute_actions("pos", self.pos.start())
                logger.info("event=node_ready name=%s http=%s", self.name, self.config.http_url)
                task_status.started()
        finally:
            self.close()
            logger.info("event=node_stopped name=%s height=%d", self.name, self.ledger.state.height)

    def close(self) -> None:
        """Make every pending write durable and close the store (idempotent)."""
        self.store.close()

    async def _watch_signals(self, scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                logger.info("event=shutdown signal=%s", signal.Signals(signum).name)
                scope.cancel()
                return

    # ---------------------------------------------------------------- network in

    def _on_frames(self, sender: str, frames: list[bytes]) -> None:
        self._wake_tick()
        now = time.monotonic()
        batches = [f for f in frames if f[:1] in (TXS_CHANNEL_BYTE, TXS_TO_LEADER_BYTE)]
        others = (
            [f for f in frames if f[:1] not in (TXS_CHANNEL_BYTE, TXS_TO_LEADER_BYTE)]
            if batches
            else frames
        )
        for group, is_batch in ((others, False), (batches, True)):
            if group and not self._inbox.process_put(InboxEntry(sender, group, now), is_batch):
                self._inbox_dropped += len(group)
                self.metrics.inbox_dropped.inc(len(group))
        self._inbox_ready.set()

    async def _inbox_loop(self) -> None:
        while True:
            entry = self._inbox.process_take()
            if entry is None:
                self._inbox_ready = trio.Event()
                await self._inbox_ready.wait()
                continue
            self.metrics.inbox_wait.observe(time.monotonic() - entry.received)
            for frame in entry.frames:
                try:
                    self._process_frame(entry.sender, frame)
                except (ValueError, codec.CodecError, TxError) as exc:
                    self.metrics.bad_frames.inc()
                    logger.warning("event=bad_frame peer=%s error=%s", entry.sender, exc)
            # A leader whose block just committed proposes the next one now,
            # not at the next tick.
            self._answer_proposals()
            if self.store.is_over_limit():
                self._flush_store()  # back-pressure: the disk fell behind
            await trio.lowlevel.checkpoint()

    def _process_frame(self, sender: str, frame: bytes) -> None:
        if not frame:
            raise ValueError("empty frame")
        channel, body = frame[0], frame[1:]
        if channel == CH_PBFT:
            if self.pbft is None:
                return
            index = self._committee_index(sender)
            self._execute_actions("pbft", self.pbft.step(MessageReceived(body, index)))
        elif channel == CH_POS:
            event = MessageReceived(body, self.pos_index.get(sender, -1))
            self._execute_actions("pos", self.pos.step(event))
        elif channel == CH_TXS:
            self._process_tx_batch(body, to_leader=False)
        elif channel == CH_TXS_TO_LEADER:
            self._process_tx_batch(body, to_leader=True)
        elif channel == CH_BLOCK:
            if not self._is_known_block_frame(body):
                self._process_block_frame(codec.decode(body))
        elif channel == CH_BLOCK_REQUEST:
            self._process_block_request(sender, codec.decode(body))
        elif channel == CH_SETTLED_REQUEST:
            self._process_settled_request(sender, codec.decode(body))
        elif channel == CH_BLOCK_RESPONSE:
            value = codec.decode(body)
            if not isinstance(value, list) or len(value) > MAX_SYNC_BLOCKS:
                raise ValueError("malformed block response")
            if self.pbft is not None:
                self._process_replica_sync(sender, value)
                return
            for item in value:
                self._process_block_frame(item)
        else:
            raise ValueError(f"unknown channel {channel}")

    def _committee_index(self, name: str) -> int:
        try:
            return self.committee_names.index(name)
        except ValueError:
            return -1

    # ---------------------------------------------------------------- transactions

    def _remember_verified(self, tx_hash: bytes) -> None:
        self._verified[tx_hash] = None
        if len(self._verified) > VERIFIED_REMEMBERED:
            self._verified.popitem(last=False)

    def submit_tx(self, raw: bytes) -> bytes:
        """Admit one transaction at ingress; returns its hash or raises TxRejectedError."""
        if len(raw) > self.config.limits.max_tx_bytes:
            raise TxRejectedError(
                "oversized",
                f"transaction is {len(raw)} bytes, limit {self.config.limits.max_tx_bytes}",
            )
        try:
            tx = decode_tx(raw)
        except TxError as exc:
            raise TxRejectedError("malformed", str(exc)) from exc
        if tx.chain_id != self.chain_id:
            raise TxRejectedError(
                "wrong_chain", f"transaction is for chain {tx.chain_id!r}, not {self.chain_id!r}"
            )
        if self.mempool.is_known(tx.tx_hash) or self.tracker.is_tracked(tx.tx_hash):
            return tx.tx_hash
        if tx.fee < self.params.min_fee:
            raise TxRejectedError(
                "fee_too_low", f"fee {tx.fee} below minimum {self.params.min_fee}"
            )
        if not is_valid_tx_signature(tx):
            raise TxRejectedError("bad_signature", "signature does not verify")
        next_nonce = queries.get_account(self.ledger.state, tx.sender).nonce
        entry = MempoolEntry(tx.tx_hash, tx.sender, tx.nonce, raw)
        try:
            self.mempool.add(entry, next_nonce)
        except MempoolFullError as exc:
            raise TxRejectedError("mempool_full", str(exc)) from exc
        except ValueError as exc:
            code = (
                "replayed_nonce"
                if "already used" in str(exc) or "pending" in str(exc)
                else "bad_nonce"
            )
            raise TxRejectedError(code, str(exc)) from exc
        self._remember_verified(tx.tx_hash)
        self._wake_tick()
        self.tracker.process_submitted(tx.tx_hash)
        self.metrics.txs_submitted.inc()
        return tx.tx_hash

    def get_leader_view(self) -> int:
        """Return the view whose leader this node forwards transactions to: a
        replica's own view, else the highest view of a certificate it has checked."""
        return self.pbft.view if self.pbft is not None else self._certified_view

    def _flush_batch(self) -> None:
        """Send admitted transactions to the leader (logged until committed); re-send
        to a new leader what an old one did not commit; escalate to every replica
        what stayed uncommitted too long (node/forwarding.py)."""
        limits = self.config.limits
        now = time.monotonic()
        view = self.get_leader_view()
        if view > self._forward_view:
            self._forward_view = view
            self._send_txs(self.forwards.take_for_view(view), to_leader=True)
        escalated = self.forwards.take_escalated(now, self._get_escalate_after_s())
        if escalated:
            self.metrics.txs_escalated.inc(len(escalated))
            self._send_txs(escalated, to_leader=False)
        while len(self.mempool):
            batch = self.mempool.take_batch(limits.batch_max_txs, limits.max_frame_bytes // 2)
            if not batch:
                return
            logged = [e for e in batch if not self.forwards.is_full()]
            for entry in logged:
                self.forwards.process_sent(entry.tx_hash, entry.raw, view, now)
            self._send_txs([e.raw for e in logged], to_leader=True)
            self._send_txs([e.raw for e in batch[len(logged) :]], to_leader=False)

    def _get_escalate_after_s(self) -> float:
        scaled = ESCALATE_LATENCY_FACTOR * self._commit_latency_s
        return min(ESCALATE_MAX_S, max(ESCALATE_MIN_S, scaled))

    def _send_txs(self, raws: list[bytes], *, to_leader: bool) -> None:
        """Send transactions in bounded batches to the leader of this node's view, or
        to every replica; a replica keeps its own copy in its proposal pool."""
        limits = self.config.limits
        leader = self.committee_names[self.get_leader_view() % len(self.committee_names)]
        channel = CH_TXS_TO_LEADER if to_leader else CH_TXS
        start = 0
        while start < len(raws):
            end, size = start, 0
            while end < len(raws) and end - start < limits.batch_max_txs:
                size += len(raws[end])
                if end > start and size > limits.max_frame_bytes // 2:
                    break
                end += 1
            chunk = raws[start:end]
            start = end
            frame = bytes([channel]) + codec.encode(chunk)
            for name in self.committee_names:
                if name == self.name:
                    for raw in chunk:
                        tx = decode_tx(raw)  # admitted here: decodes
                        self.pool.add(tx.tx_hash, raw, (tx.sender, tx.nonce))
                elif name == leader or not to_leader:
                    self.transport.send(name, frame)

    def _get_next_nonce(self, sender: bytes) -> int:
        return queries.get_account(self.ledger.state, sender).nonce

    def _process_tx_batch(self, body: bytes, *, to_leader: bool) -> None:
        if self.pbft is None:
            return
        raws = codec.decode(body)
        if not isinstance(raws, list) or len(raws) > self.config.limits.batch_max_txs:
            raise ValueError("malformed transaction batch")
        if to_leader and not self.pbft.is_leader():
            # The sender knew another view: pass the batch on to the leader of ours
            # as a plain batch (never relayed again, so views that disagree cannot
            # bounce it), and keep a copy, as for a batch sent to every replica.
            # It may reach the leader ahead of the sender's earlier transactions;
            # the leader proposes a sender's transactions in nonce order only.
            leader = self.committee_names[self.pbft.view % len(self.committee_names)]
            if leader != self.name:
                self.transport.send(leader, TXS_CHANNEL_BYTE + body)
        for raw in raws:
            if not isinstance(raw, bytes) or len(raw) > self.config.limits.max_tx_bytes:
                self.metrics.bad_txs.inc()
                continue
            tx_hash = compute_hash(raw)
            if self.pool.is_known(tx_hash):
                continue
            try:
                tx = decode_tx(raw)
            except TxError:
                self.metrics.bad_txs.inc()
                continue
            if tx_hash not in self._verified:
                if get_tx_error(tx, self.chain_id) is not None:
                    self.metrics.bad_txs.inc()
                    continue
                self._remember_verified(tx_hash)
            self.pool.add(tx_hash, raw, (tx.sender, tx.nonce))

    # ---------------------------------------------------------------- proposals

    def _update_work(self) -> None:
        if self.pbft is None:
            return
        height = self.ledger.state.height
        epoch_open = self._last_tx_height > 0 and height % self.params.epoch_length != 0
        pending = len(self.pool) > 0 or epoch_open
        if pending != self._work_pending:
            self._work_pending = pending
            self._execute_actions("pbft", self.pbft.step(WorkAvailable(pending)))

    def _epoch_close_target(self) -> int:
        length = self.params.epoch_length
        return math.ceil(self._last_tx_height / length) * length

    def _is_empty_block_due(self, seq: int) -> bool:
        """True iff the leader may propose an empty (epoch-closing) block at ``seq`` now.

        An empty block only closes an open epoch so that it can settle; it waits
        until every earlier proposal has executed and ``empty_block_interval_ms``
        has passed since the last proposal. Otherwise it records when it is due
        (an idle tick loop wakes then). Proposing empty blocks back to back kept
        the 18-node bench machine busy with them at low rates.
        """
        if self.pbft is None or seq - 1 > self.pbft.executed:
            return False  # asked again when the earlier block executes
        due = self._last_proposal_at + self._empty_block_interval_s
        if time.monotonic() >= due:
            return True
        self._empty_block_due_at = due
        return False

    def _get_carried_tx_hashes(self) -> list[bytes]:
        """Hashes of the transactions in the blocks this replica accepted but has
        not executed (after a view change: the blocks the new view re-proposes)."""
        if self.pbft is None:
            return []
        return [
            compute_hash(raw)
            for payload in self.pbft.get_uncommitted_payloads()
            for raw in decode_payload(payload).raw_txs
        ]

    def _answer_proposals(self) -> None:
        self._empty_block_due_at = None  # set again below while an empty block waits
        if self.pbft is None or not self._requested_seqs:
            return
        if self.pbft.view != self._last_view:
            self._last_view = self.pbft.view
            self.pool.process_view_change(self._get_carried_tx_hashes())
            self.metrics.view_changes.inc()
        while self._requested_seqs:
            seq = self._requested_seqs[0]
            in_flight = seq - 1 - self.pbft.executed
            if in_flight >= MAX_PROPOSALS_IN_FLIGHT:
                return  # answered when an earlier block commits: it carries more txs
            if in_flight > 0 and self.pool.get_unproposed_count() < PIPELINE_MIN_TXS:
                return  # likewise: pipelining pays only with a backlog
            raws: list[bytes] = []
            if self.pool.get_unproposed_count() > 0:
                raws = self.pool.take_proposal(
                    self.config.limits.batch_max_txs * 4,
                    MAX_PAYLOAD - 256,
                    self._get_next_nonce,
                    now=time.monotonic(),
                    max_wait_s=NONCE_GAP_WAIT_S,
                )
            if not raws:
                if seq > self._epoch_close_target():
                    return
                if not self._is_empty_block_due(seq):
                    return  # the tick loop wakes for it (_get_idle_wait_s)
            self._requested_seqs.pop(0)
            if raws:
                self._last_tx_height = max(self._last_tx_height, seq)
            self._last_proposal_at = time.monotonic()
            payload = compute_payload(int(time.time() * 1000), self.public_key, raws)
            self._execute_actions("pbft", self.pbft.step(ProposalReady(seq, payload)))

    # ---------------------------------------------------------------- execution

    def _process_commit(self, seq: int, payload: bytes, qc: QuorumCertificate) -> None:
        height = self.ledger.state.height
        if seq <= height:
            return
        if len(self._pending_blocks) < MAX_PENDING_BLOCKS or seq == height + 1:
            self._pending_blocks.setdefault(seq, (payload, qc))
        self._known_height = max(self._known_height, seq)
        while (nxt := self._pending_blocks.pop(self.ledger.state.height + 1, None)) is not None:
            self._execute_block(self.ledger.state.height + 1, nxt[0], nxt[1])
        for stale in [h for h in self._pending_blocks if h <= self.ledger.state.height]:
            del self._pending_blocks[stale]

    def _execute_block(self, height: int, payload: bytes, qc: QuorumCertificate) -> None:
        started = time.perf_counter()
        decoded = decode_payload(payload)
        txs = compute_payload_txs(decoded)
        txs = [tx for tx in txs if tx.tx_hash in self._verified or is_valid_tx_signature(tx)]
        for tx in txs:
            # Executed once: a later copy (late gossip) is known to the pool as
            # committed, so the hash need not be remembered as verified.
            self._verified.pop(tx.tx_hash, None)
        state = self.ledger.state
        block = compute_block(
            self.chain_id,
            height,
            state.block_hash,
            state.digest,
            height // self.params.epoch_length,
            [tx for tx in txs if tx.chain_id == self.chain_id],
            proposer=decoded.proposer,
            timestamp_ms=decoded.timestamp_ms,
        )
        new_state, receipts = apply_block(state, block, verified=True)
        record = compute_certificate_record(qc, payload, decoded, block)
        self.ledger.commit(new_state, block, receipts, record)
        self._flush_wanted.set()
        block_hash = block.block_hash()
        if block.txs:
            self._last_tx_height = max(self._last_tx_height, height)
        hashes = [tx.tx_hash for tx in block.txs]
        self.pool.process_committed(hashes, time.monotonic())
        self.forwards.process_committed(hashes)
        for tx in block.txs:
            self.mempool.process_committed_nonce(tx.sender, tx.nonce + 1)
        self.tracker.process_block(
            height, block_hash, [(r.tx_hash, r.ok, r.reason) for r in receipts]
        )
        self.metrics.observe_block(height, len(block.txs), time.perf_counter() - started)
        for tx_hash in hashes:
            latency_ms = self.tracker.get_commit_latency_ms(tx_hash)
            if latency_ms is not None:
                self.metrics.commit_latency.observe(latency_ms / 1000)
                # Recent commit latency (moving average), for the escalation delay.
                self._commit_latency_s += (latency_ms / 1000 - self._commit_latency_s) / 16
        if self.is_replica:
            self._push_block(height, payload, qc)
        next_validators = None
        if queries.get_validator_updates(new_state):
            next_validators = {
                v.public_key: v.stake
                for v in queries.get_validator_set(new_state)
                if "pos" in v.roles and v.stake > 0
            }
        event = BlockExecuted(height, block_hash, new_state.digest, next_validators)
        self._execute_actions("pos", self.pos.step(event))
        if self._settled_unmapped:
            self._notify_pbft_settled()
        self._update_work()

    def _push_block(self, height: int, payload: bytes, qc: QuorumCertificate) -> None:
        if not self.followers or self.pbft is None:
            return
        n = len(self.committee_names)
        frame = bytes([CH_BLOCK]) + codec.encode([height, payload, qc.get_encoded_wire()])
        for j, name in enumerate(self.followers):
            if self.pbft.index in (j % n, (j + 1) % n):
                self.transport.send(name, frame)

    def _is_known_block_frame(self, body: bytes) -> bool:
        """Return True iff a pushed block frame is for a block this node already has.

        Two replicas push every block to each PoS node; the second copy is
        dropped on its height alone, before the payload and certificate decode.
        """
        height = codec.decode_first(body)
        return type(height) is int and (
            height <= self.ledger.state.height or height in self._pending_blocks
        )

    def _process_block_frame(self, value: Any) -> None:
        if not isinstance(value, list) or len(value) != 3:
            raise ValueError("malformed block frame")
        height, payload, qc_wire = value
        if type(height) is not int or not isinstance(payload, bytes):
            raise ValueError("malformed block frame")
        if height <= self.ledger.state.height or height in self._pending_blocks:
            return
        qc = QuorumCertificate.from_wire(qc_wire)
        error = get_certificate_error(qc, self.committee, self.f, self.chain_id)
        if error is None and (qc.seq != height or compute_hash(payload) != qc.digest):
            error = "certificate does not match the block"
        if error is not None:
            self.metrics.bad_frames.inc()
            logger.warning("event=block_rejected height=%d error=%s", height, error)
            return
        self._certified_view = max(self._certified_view, qc.view)
        self._process_commit(height, payload, qc)

    def _process_replica_sync(self, sender: str, items: list[Any]) -> None:
        """Hand blocks fetched by the sync loop to the PBFT replica as a fetch response.

        The replica checks each certificate and commits the blocks in order
        (CommitBlock actions execute them), so the replica's executed height
        and the ledger stay in step. Blocks below the replica's executed
        height that the ledger misses are verified and executed directly.
        """
        blocks = []
        for item in items:
            if not isinstance(item, list) or len(item) != 3:
                raise ValueError("malformed block frame")
            height, payload, qc_wire = item
            if type(height) is not int or not isinstance(payload, bytes):
                raise ValueError("malformed block frame")
            blocks.append(CommittedBlock(height, payload, QuorumCertificate.from_wire(qc_wire)))
        if blocks and self.pbft is not None:
            message = FetchResponse(tuple(blocks)).to_bytes()
            event = MessageReceived(message, self._committee_index(sender))
            self._execute_actions("pbft", self.pbft.step(event))
        # Blocks the replica counts as executed but the ledger lacks (the process
        # died between persisting the replica's progress and the ledger batch)
        # go straight to the ledger; anything already executed is ignored there.
        for item in items:
            self._process_block_frame(item)

    def _process_settled_request(self, sender: str, value: Any) -> None:
        """Answer ``[first_epoch]`` with the settled checkpoints known here from that epoch on.

        Each goes out as a PoS SettledNotice frame, in epoch order; the
        requester's PoS machine verifies every one against its validator set.
        """
        if not isinstance(value, list) or len(value) != 1 or type(value[0]) is not int:
            raise ValueError("malformed settled-checkpoint request")
        first = value[0]
        for epoch in range(first, first + MAX_SYNC_NOTICES):
            checkpoint = self._settled_checkpoints.get(epoch)
            if checkpoint is None:
                break
            frame = bytes([CH_POS]) + SettledNotice(checkpoint).to_bytes()
            if not self.transport.send(sender, frame):
                break

    def _process_block_request(self, sender: str, value: Any) -> None:
        if not isinstance(value, list) or len(value) != 2 or not all(type(v) is int for v in value):
            raise ValueError("malformed block request")
        start, end = value
        blocks = [
            [height, payload, qc.to_wire()]
            for height, payload, qc in self._get_stored_blocks(max(1, start), end)
        ]
        if blocks:
            self.transport.send(sender, bytes([CH_BLOCK_RESPONSE]) + codec.encode(blocks))

    def _get_stored_blocks(
        self, start: int, end: int
    ) -> list[tuple[int, bytes, QuorumCertificate]]:
        """Return stored blocks ``start..end`` with their certificates, in order.

        At most MAX_SYNC_BLOCKS, and never more payload than half a frame, so
        the answer always fits in one frame (at least one block is returned
        when ``start`` is stored: a block's payload is bounded by MAX_PAYLOAD).
        """
        budget = self.config.limits.max_frame_bytes // 2
        end = min(end, start + MAX_SYNC_BLOCKS - 1, self.ledger.state.height)
        blocks: list[tuple[int, bytes, QuorumCertificate]] = []
        for height in range(start, end + 1):
            stored = self.ledger.get_certificate(height)
            block_bytes = self.ledger.get_block_bytes(height)
            if stored is None or block_bytes is None:
                break
            qc = get_record_certificate(stored)
            payload = get_record_payload(stored, block_bytes)
            budget -= len(stored) + len(payload) + 64
            if blocks and budget < 0:
                break
            blocks.append((height, payload, qc))
        return blocks

    async def _heap_loop(self) -> None:
        """Return the C heap's free pages to the OS every TRIM_INTERVAL_S (node/heap.py)."""
        while True:
            await trio.sleep(heap.TRIM_INTERVAL_S)
            started = time.perf_counter()
            heap.process_trim_heap()
            self.metrics.heap_trim_seconds.inc(time.perf_counter() - started)

    async def _sync_loop(self) -> None:
        """Ask a replica for the blocks above our height.

        Followers and nodes known to lag ask every SYNC_INTERVAL_S. A replica
        that sees no sign of lagging still asks every REPLICA_PROBE_INTERVALS
        intervals: a replica that restarted with an empty or old data
        directory in an idle cluster hears no consensus traffic that would
        tell it it is behind (a peer with nothing newer does not answer).
        """
        rounds = 0
        while True:
            await trio.sleep(SYNC_INTERVAL_S)
            rounds += 1
            height = self.ledger.state.height
            gap = self._pending_blocks and min(self._pending_blocks) > height + 1
            lagging = gap or self._known_height > height
            if self.is_replica and not lagging and rounds % REPLICA_PROBE_INTERVALS:
                continue
            sources = [n for n in self.committee_names if n != self.name]
            if not sources:
                continue
            self._sync_cursor = (self._sync_cursor + 1) % len(sources)
            count = self.pbft_config.fetch_batch if self.pbft is not None else MAX_SYNC_BLOCKS
            request = codec.encode([height + 1, height + count])
            self.transport.send(sources[self._sync_cursor], bytes([CH_BLOCK_REQUEST]) + request)
            if rounds % REPLICA_PROBE_INTERVALS == 0:
                self._request_settled()

    def _request_settled(self) -> None:
        """Ask a peer for settled checkpoints above ours when an executed epoch is unsettled.

        A node that synced blocks (restarted, or new) missed the checkpoint
        votes of those epochs; a PoS validator recovers by voting, but a
        node that does not vote would otherwise never learn they settled.
        """
        executed_epochs = self.ledger.state.height // self.params.epoch_length
        if self.pos.settled_epoch >= executed_epochs:
            return
        peers = [n for n in self.all_names if n != self.name]
        if not peers:
            return
        peer = peers[(self._sync_cursor + 1) % len(peers)]
        request = codec.encode([self.pos.settled_epoch + 1])
        self.transport.send(peer, bytes([CH_SETTLED_REQUEST]) + request)

    # ---------------------------------------------------------------- actions

    def _execute_actions(self, machine: str, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Persist):
                self.store.write({schema.node_record_key(action.key): action.value})
            else:
                self._execute_action(machine, action)
        if machine == "pbft":
            self._log_view_transition()

    def _log_view_transition(self) -> None:
        """Log once when this replica leaves a view and once when it enters one."""
        if self.pbft is None:
            return
        state = (self.pbft.view, self.pbft.in_view_change)
        if state == self._logged_view:
            return
        previous = self._logged_view
        self._logged_view = state
        view, changing = state
        leader = self.committee_names[view % len(self.committee_names)]
        # A replica that joins a view change and completes it in one step (the new
        # leader holding 2f+1 view changes) left its old view all the same.
        if changing or (view > previous[0] and not previous[1]):
            logger.warning(
                "event=view_change_started view=%d leader=%s executed=%d",
                view,
                leader,
                self.pbft.executed,
            )
        if not changing:
            logger.info(
                "event=view_entered view=%d leader=%s executed=%d", view, leader, self.pbft.executed
            )

    async def _flush_before_write(self, frames: list[bytes]) -> None:
        """The transport's write-ahead hook: a batch that holds a consensus frame
        (PBFT or PoS) waits until every write produced before it is durable.

        Other frames (transactions, pushed and fetched blocks, sync requests)
        carry nothing that depends on this node's records: they leave at once,
        and the records and ledger batches pending then join the next flush.
        """
        if is_consensus_batch(frames):
            self._flush_store()

    def _flush_store(self) -> None:
        """Make every pending write durable in one synced batch (group commit).

        Pending writes are the ledger batches of executed blocks and the
        consensus records the state machines persisted. The transport awaits
        the write-ahead hook before it writes a consensus frame
        (:meth:`_flush_before_write`), so no vote leaves the node before the
        records (and ledger batches) produced with or before it are on disk;
        the flush loop runs it soon after every executed block.

        The synced write runs on the event loop, which waits for the disk:
        nothing else of this node runs meanwhile, so flushes never overlap
        and reach the disk in order. A hand-off to a worker thread was
        measured to cost more than it saved (ADR 0001: about 0.2 ms of CPU
        per flush against 0.09 ms for the synced write itself, and a GIL
        hand-back that waits behind a busy event loop).
        """
        if not self.store.has_pending():
            return
        self.store.flush()
        self.metrics.persist_writes.inc()

    async def _flush_loop(self) -> None:
        """Flush after a block executes (a PoS node up to ``FLUSH_DELAY_S`` later),
        also when no consensus frame is due to leave."""
        while True:
            await self._flush_wanted.wait()
            if self._flush_delay_s > 0:
                await trio.sleep(self._flush_delay_s)
            self._flush_wanted = trio.Event()
            self._flush_store()

    def _execute_action(self, machine: str, action: Action) -> None:
        channel = CH_PBFT if machine == "pbft" else CH_POS
        if isinstance(action, Broadcast):
            frame = bytes([channel]) + action.message.to_bytes()
            names = self.committee_names if machine == "pbft" else self.all_names
            for name in names:
                if name != self.name:
                    self.transport.send(name, frame)
        elif isinstance(action, Send):
            names = self.committee_names if machine == "pbft" else self.pos_names
            if 0 <= action.to < len(names) and names[action.to] != self.name:
                self.transport.send(names[action.to], bytes([channel]) + action.message.to_bytes())
        elif isinstance(action, SetTimer):
            deadline = time.monotonic() + action.delay_ms / 1000
            self._timers[(machine, action.name)] = (deadline, action.token)
            self._wake_tick()  # an idle tick loop recomputes its wait
        elif isinstance(action, CancelTimer):
            self._timers.pop((machine, action.name), None)
        elif isinstance(action, RequestProposal):
            if action.seq not in self._requested_seqs:
                self._requested_seqs.append(action.seq)
                self._requested_seqs.sort()
        elif isinstance(action, CommitBlock):
            self._process_commit(action.seq, action.payload, action.qc)
        elif isinstance(action, ServeBlocks):
            self._serve_blocks(action)
        elif isinstance(action, SettleCheckpoint):
            self._process_settled(action)
        elif isinstance(action, ValidatorSetChanged):
            if tuple(action.committee) != self.committee:
                logger.warning(
                    "event=committee_change epoch=%d note=committee rotation takes effect "
                    "after the operators restart the replicas with the new genesis",
                    action.epoch,
                )
        elif isinstance(action, EmitEvidence):
            self._submit_evidence(action)
        elif isinstance(action, Alert):
            logger.warning("event=consensus_alert machine=%s reason=%s", machine, action.reason)

    def _serve_blocks(self, action: ServeBlocks) -> None:
        blocks = [
            CommittedBlock(height, payload, qc)
            for height, payload, qc in self._get_stored_blocks(action.from_seq, action.to_seq)
        ]
        if blocks and 0 <= action.to < len(self.committee_names):
            message = FetchResponse(tuple(blocks))
            self.transport.send(
                self.committee_names[action.to], bytes([CH_PBFT]) + message.to_bytes()
            )

    def _process_settled(self, action: SettleCheckpoint) -> None:
        checkpoint = action.checkpoint
        self._settled_checkpoints[checkpoint.epoch] = checkpoint
        while len(self._settled_checkpoints) > MAX_SETTLED_KEPT:
            self._settled_checkpoints.popitem(last=False)
        self.tracker.process_settled(checkpoint.height, checkpoint.epoch)
        self.metrics.settled_height.set(checkpoint.height)
        self._settled_unmapped[checkpoint.height] = checkpoint.block_hash
        self._notify_pbft_settled()

    def _notify_pbft_settled(self) -> None:
        """Tell the replica about settled checkpoints of blocks executed here.

        PoS checkpoints name the ledger block hash; the replica knows blocks by
        payload digest, so the node maps one to the other once it has executed
        the block (a settled block not yet executed waits here).
        """
        height = self.ledger.state.height
        for settled_height in sorted(h for h in self._settled_unmapped if h <= height):
            block_hash = self._settled_unmapped.pop(settled_height)
            block = self.ledger.get_block(settled_height)
            stored = self.ledger.get_certificate(settled_height)
            if block is None or stored is None:
                continue
            if block.block_hash() != block_hash:
                logger.critical(
                    "event=settled_conflict height=%d local=%s settled=%s",
                    settled_height,
                    block.block_hash().hex(),
                    block_hash.hex(),
                )
                continue
            if self.pbft is not None:
                qc = get_record_certificate(stored)
                event = CheckpointSettled(settled_height, qc.digest)
                self._execute_actions("pbft", self.pbft.step(event))
        while len(self._settled_unmapped) > MAX_PENDING_BLOCKS:
            del self._settled_unmapped[min(self._settled_unmapped)]

    def _submit_evidence(self, action: EmitEvidence) -> None:
        evidence_id = action.evidence.evidence_id()
        if evidence_id in self._evidence_seen:
            return
        self._evidence_seen.add(evidence_id)
        logger.warning("event=equivocation offender=%s", action.evidence.offender.hex())
        self.metrics.evidence.inc()
        nonce = max(self._own_nonce, queries.get_account(self.ledger.state, self.public_key).nonce)
        raw = compute_signed_tx(
            self.keys.account_seed,
            self.chain_id,
            TxKind.SUBMIT_EVIDENCE,
            nonce,
            [action.evidence.to_wire()],
            fee=self.params.min_fee,
        )
        try:
            self.submit_tx(raw)
            self._own_nonce = nonce + 1
        except TxRejectedError as exc:
            logger.warning("event=evidence_not_submitted reason=%s", exc)

    # ---------------------------------------------------------------- tick

    def _wake_tick(self) -> None:
        self._activity = True
        self._tick_wake.set()

    def _is_idle(self) -> bool:
        """True iff nothing arrived since the last tick and no transaction waits."""
        return not (self._activity or len(self.mempool) or self.pool.get_unproposed_count())

    def _get_idle_wait_s(self) -> float:
        """Seconds until the earliest armed timer or due empty block, capped at IDLE_WAIT_MAX_S."""
        deadlines = [deadline for deadline, _token in self._timers.values()]
        if self._empty_block_due_at is not None:
            deadlines.append(self._empty_block_due_at)
        if not deadlines:
            return IDLE_WAIT_MAX_S
        return min(IDLE_WAIT_MAX_S, max(0.0, min(deadlines) - time.monotonic()))

    async def _tick_loop(self) -> None:
        while True:
            await trio.sleep(TICK_S)
            if self._is_idle():
                self._tick_wake = trio.Event()
                with trio.move_on_after(self._get_idle_wait_s()):
                    await self._tick_wake.wait()
            self._activity = False
            self._flush_batch()
            self._update_work()
            self._answer_proposals()
            self._fire_timers()
            self.metrics.mempool_size.set(len(self.mempool) + len(self.pool))
            self.metrics.peers.set(len(self.transport.get_connected_peers()))
            if self.pbft is not None:
                self.metrics.view.set(self.pbft.view)

    def _fire_timers(self) -> None:
        now = time.monotonic()
        due = sorted((d, key, token) for key, (d, token) in self._timers.items() if d <= now)
        for _deadline, key, token in due:
            if self._timers.get(key, (0.0, -1))[1] != token:
                continue
            del self._timers[key]
            machine, name = key
            target = self.pbft if machine == "pbft" else self.pos
            if target is not None:
                self._execute_actions(machine, target.step(TimerFired(name, token)))

    # ---------------------------------------------------------------- queries (HTTP)

    def get_tx_status(self, tx_hash: bytes) -> dict[str, Any] | None:
        """Return the tracked status, else the stored receipt's status, else None."""
        doc = self.tracker.get(tx_hash)
        if doc is not None:
            return doc
        receipt = self.ledger.get_receipt(tx_hash)
        if receipt is None:
            return None
        settled = receipt.height <= self.get_settled_height()
        status = "failed" if not receipt.ok else ("settled" if settled else "confirmed")
        doc = {
            "hash": tx_hash.hex(),
            "status": status,
            "height": receipt.height,
            "settled": settled,
        }
        if not receipt.ok:
            doc["reason"] = receipt.reason
        return doc

    async def wait_tx(self, tx_hash: bytes, level: str, timeout: float) -> dict[str, Any] | None:
        """Wait for a tracked transaction to reach ``level``; else report what is known."""
        if not self.tracker.is_tracked(tx_hash):
            return self.get_tx_status(tx_hash)
        return await self.tracker.wait(tx_hash, level, timeout)

    def get_settled_height(self) -> int:
        """Return the height of the last settled checkpoint (0 if none)."""
        return 0 if self.pos.settled is None else self.pos.settled.height

    def get_status(self) -> dict[str, Any]:
        """Return the status document served at /v1/status."""
        peers = self.transport.get_connected_peers()
        total = len(self.transport.get_peer_names())
        height = self.ledger.state.height
        view = self.pbft.view if self.pbft else None
        leader = None
        if self.pbft is not None:
            leader = self.committee_names[self.pbft.view % len(self.committee_names)]
        return {
            "name": self.name,
            "chain_id": self.chain_id,
            "role": "pbft" if self.is_replica else "pos",
            "roles": list(self.roles),
            "height": height,
            "block_hash": self.ledger.state.block_hash.hex(),
            "state_digest": self.ledger.state.digest.hex(),
            "settled_height": self.get_settled_height(),
            "settled_epoch": self.pos.settled_epoch,
            "view": view,
            "leader": leader,
            "peers": len(peers),
            "peers_total": total,
            "catching_up": self._known_height > height + 1 or bool(self._pending_blocks),
            "mempool": len(self.mempool),
            "pool": len(self.pool),
            "ready": self._http_ready and len(peers) >= math.ceil(2 * total / 3),
            "started_ms": self.started_ms,
        }

    def get_block(self, height: int) -> dict[str, Any] | None:
        """Return a committed block with its certificate as a JSON document."""
        block = self.ledger.get_block(height)
        if block is None:
            return None
        stored = self.ledger.get_certificate(height)
        h = block.header
        doc: dict[str, Any] = {
            "height": h.height,
            "hash": block.block_hash().hex(),
            "parent_hash": h.parent_hash.hex(),
            "tx_root": h.tx_root.hex(),
            "state_digest": h.state_digest.hex(),
            "epoch": h.epoch,
            "proposer": h.proposer.hex(),
            "timestamp_ms": h.timestamp_ms,
            "txs": [tx.tx_hash.hex() for tx in block.txs],
        }
        if stored is not None:
            qc = get_record_certificate(stored)
            doc["certificate"] = {
                "view": qc.view,
                "seq": qc.seq,
                "digest": qc.digest.hex(),
                "signers": [v.signer.hex() for v in qc.votes],
            }
        return doc

    def get_account(self, account: bytes) -> dict[str, Any] | None:
        """Return balance, nonce and stake of an account."""
        if len(account) != 32:
            return None
        acc = queries.get_account(self.ledger.state, account)
        return {
            "account": account.hex(),
            "balance": acc.balance,
            "nonce": acc.nonce,
            "stake": queries.get_stake(self.ledger.state, account),
        }

    def get_asset(self, asset_id: bytes) -> dict[str, Any] | None:
        """Return a registered asset as a JSON document, or None."""
        asset = queries.get_asset(self.ledger.state, asset_id) if len(asset_id) == 32 else None
        if asset is None:
            return None
        doc = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in asset._asdict().items()}
        doc["revoked"] = queries.is_asset_revoked(self.ledger.state, asset_id)
        return doc

    def get_validators(self) -> list[dict[str, Any]]:
        """Return the validator set with names, stakes and roles."""
        return [
            {
                "name": self.names_by_key.get(v.public_key, ""),
                "public_key": v.public_key.hex(),
                "stake": v.stake,
                "roles": list(v.roles),
            }
            for v in queries.get_validator_set(self.ledger.state)
        ]

    def get_supply(self) -> dict[str, Any]:
        """Return the supply breakdown."""
        return dict(queries.get_supply_breakdown(self.ledger.state))

    def get_metrics_text(self) -> bytes:
        """Return Prometheus exposition text."""
        self.metrics.height.set(self.ledger.state.height)
        return self.metrics.render()

    # -- data access ------------------------------------------------

    def get_pre_key(self, account: bytes) -> dict[str, Any] | None:
        """Return the account's registered Umbral key and verifying key as hex, or None."""
        record = queries.get_pre_key(self.ledger.state, account) if len(account) == 32 else None
        if record is None:
            return None
        return {
            "account": account.hex(),
            "umbral_key": record.umbral_key.hex(),
            "verifying_key": record.verifying_key.hex(),
            "height": record.height,
        }

    def get_blob_store(self) -> BlobStore:
        """Return the blob store under ``<data>/blobs`` (created on first use), bounded by
        ``limits.blob_max_bytes`` per blob and ``limits.blob_store_max_bytes`` in total."""
        store: BlobStore | None = getattr(self, "_blob_store", None)
        if store is None:
            store = BlobStore(
                self.config.data_path / "blobs",
                self.config.limits.blob_max_bytes,
                self.config.limits.blob_store_max_bytes,
            )
            self._blob_store = store
        return store

    def get_access_doc(self, request_id: bytes) -> dict[str, Any] | None:
        """Return the request, its grant (without kfrags) and its recorded signed cfrags."""
        state = self.ledger.state
        request = queries.get_access(state, request_id)
        if request is None:
            return None
        doc = _hex_doc(request._asdict())
        doc["request_id"] = request_id.hex()
        doc["status_name"] = ACCESS_STATUS_NAMES.get(request.status, str(request.status))
        doc["current_height"] = state.height
        doc["settled_height_now"] = self.get_settled_height()
        doc["asset_revoked"] = queries.is_asset_revoked(state, request.asset_id)
        grant = queries.get_grant(state, request_id)
        if grant is None:
            doc["grant"] = None
        else:
            gdoc = _hex_doc(grant._asdict())
            gdoc.pop("kfrags")
            gdoc["settled"] = grant.height <= self.get_settled_height()
            doc["grant"] = gdoc
        doc["cfrags"] = [
            {"proxy": proxy.hex(), "signed_cfrag": raw.hex()}
            for proxy, raw in queries.get_cfrags(state, request_id)
        ]
        return doc

    def get_proxy_grants(self, proxy: bytes, from_height: int, limit: int) -> dict[str, Any]:
        """Return the grants naming ``proxy`` (with its own sealed kfrag) from ``from_height``."""
        state = self.ledger.state
        settled = self.get_settled_height()
        items: list[dict[str, Any]] = []
        for request_id, height, asset_id in queries.get_proxy_grants(
            state, proxy, from_height, limit
        ):
            grant = queries.get_grant(state, request_id)
            request = queries.get_access(state, request_id)
            if grant is None or request is None or proxy not in grant.proxies:
                continue
            items.append(
                {
                    "request_id": request_id.hex(),
                    "asset_id": asset_id.hex(),
                    "height": height,
                    "consumer": grant.consumer.hex(),
                    "status": request.status,
                    "status_name": ACCESS_STATUS_NAMES.get(request.status, str(request.status)),
                    "deadline": grant.deadline,
                    "threshold": grant.threshold,
                    "kfrag": grant.kfrags[grant.proxies.index(proxy)].hex(),
                    "capsule": grant.capsule.hex(),
                    "delegating_pk": grant.delegating_pk.hex(),
                    "verifying_pk": grant.verifying_pk.hex(),
                    "receiving_pk": grant.receiving_pk.hex(),
                    "published": proxy in grant.cfrag_proxies or proxy in grant.slashed_proxies,
                    "cfrag_count": len(grant.cfrag_proxies),
                    "grant_settled": height <= settled,
                    "asset_exists": queries.get_asset(state, asset_id) is not None,
                    "asset_revoked": queries.is_asset_revoked(state, asset_id),
                }
            )
        return {"height": state.height, "settled_height": settled, "grants": items}

    def get_provider_requests(
        self, provider: bytes, from_height: int, limit: int
    ) -> dict[str, Any]:
        """Return requests to ``provider``'s assets from ``from_height`` with consumer keys."""
        state = self.ledger.state
        items: list[dict[str, Any]] = []
        for request_id, height, asset_id in queries.get_provider_requests(
            state, provider, from_height, limit
        ):
            request = queries.get_access(state, request_id)
            if request is None:
                continue
            pre_key = queries.get_pre_key(state, request.consumer)
            items.append(
                {
                    "request_id": request_id.hex(),
                    "asset_id": asset_id.hex(),
                    "height": height,
                    "consumer": request.consumer.hex(),
                    "consumer_pre_key": None if pre_key is None else pre_key.umbral_key.hex(),
                    "status": request.status,
                    "status_name": ACCESS_STATUS_NAMES.get(request.status, str(request.status)),
                    "deadline": request.deadline,
                    "asset_revoked": queries.is_asset_revoked(state, asset_id),
                }
            )
        return {"height": state.height, "requests": items}

    # -- training jobs --
    def get_job(self, job_id: bytes) -> dict[str, Any] | None:
        """Return a training job document, or None."""
        return get_job_doc(self.ledger.state, job_id)

    def get_executor(self, account: bytes) -> dict[str, Any] | None:
        """Return an executor document with its open jobs, or None."""
        return get_executor_doc(self.ledger.state, account)


ACCESS_STATUS_NAMES = {
    ACCESS_PENDING: "pending",
    ACCESS_GRANTED: "granted",
    ACCESS_FAILED: "failed",
    ACCESS_DISPUTED: "disputed",
    ACCESS_DELIVERING: "delivering",
}


def _hex_doc(fields: dict[str, Any]) -> dict[str, Any]:
    """Return ``fields`` with bytes (and lists of bytes) as hex, for JSON."""
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, bytes):
            out[key] = value.hex()
        elif isinstance(value, list):
            out[key] = [v.hex() if isinstance(v, bytes) else v for v in value]
        else:
            out[key] = value
    return out


async def run_node(home: Path, keys: NodeKeys, config: NodeConfig) -> None:
    """Build and run the node of ``home`` until it is stopped."""
    node = Node(config, keys)
    await node.run()
