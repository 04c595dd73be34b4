"""Measure py-libp2p (TCP + Noise + yamux) between two processes on 127.0.0.1.

Usage: .venv/bin/python -m bench.net_probe [--quick] [--rtt-samples N]
       .venv/bin/python -m bench.net_probe --cluster 18

The script starts a server process (``--serve``) and acts as the client. It
prints one row per measurement:

- raw 1/write:  200-byte frames, one ``stream.write()`` per frame;
- raw 64/write: 200-byte frames, 64 frames per ``write()``, buffered reader;
- raw 64 KiB:   65,536-byte frames, one per ``write()`` (one-way throughput);
- raw RTT:      one 200-byte message out and back on one stream (p50/p99);
- transport:    200-byte frames through :class:`node.transport.Transport`
                (``send()`` with its own per-peer batching) and its RTT.

Rates count frames from the first write until the server acknowledges the
last one. "client CPU" is this process's CPU time per frame (sender side).

``--cluster N`` instead starts N member processes at once; each connects to
all others, broadcasts 100 small frames, and reports how long it took until it
was connected to every peer and had every peer's frames.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from typing import Any

import multiaddr
import trio
from libp2p import new_host
from libp2p.abc import IHost, INetStream
from libp2p.crypto.x25519 import create_new_key_pair as create_new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from consensus.crypto import compute_seed_from_label
from node.framing import FrameDecoder, encode_frames
from node.keys import compute_identity_key_pair
from node.transport import Member, Transport, TransportLimits

SINK = TProtocol("/dmchain/probe/sink/1.0.0")
ECHO = TProtocol("/dmchain/probe/echo/1.0.0")
MSG = 200
BIG = 64 * 1024
READ_CHUNK = 256 * 1024
SERVER_MAX_SECONDS = 600
DONE = b"done"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _key(label: str) -> Any:
    return compute_identity_key_pair(compute_seed_from_label(f"net-probe-{label}"))


def _peer_id(label: str) -> str:
    return ID.from_pubkey(_key(label).public_key).to_base58()


def _raw_host(label: str) -> IHost:
    key = _key(label)
    return new_host(
        key_pair=key,
        sec_opt={
            NOISE_PROTOCOL_ID: NoiseTransport(
                key, noise_privkey=create_new_x25519_key_pair().private_key
            )
        },
        muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )


def _members(transport_ports: tuple[int, int]) -> dict[str, Member]:
    return {
        "client": Member(_peer_id("client"), f"/ip4/127.0.0.1/tcp/{transport_ports[0]}"),
        "server": Member(_peer_id("server"), f"/ip4/127.0.0.1/tcp/{transport_ports[1]}"),
    }


# ---------------------------------------------------------------- server side


async def _sink(stream: INetStream) -> None:
    """Count frames; the first frame holds the expected count; ack when all arrived."""
    decoder = FrameDecoder(BIG)
    expected = -1
    seen = 0
    while True:
        chunk = await stream.read(READ_CHUNK)
        if not chunk:
            return
        for frame in decoder.feed(chunk):
            if expected < 0:
                expected = int.from_bytes(frame, "big")
            else:
                seen += 1
        if expected >= 0 and seen >= expected:
            await stream.write(DONE)
            expected, seen = -1, 0


async def _echo(stream: INetStream) -> None:
    """Send back every MSG bytes received, as soon as they are complete."""
    pending = b""
    while True:
        chunk = await stream.read(READ_CHUNK)
        if not chunk:
            return
        pending += chunk
        while len(pending) >= MSG:
            await stream.write(pending[:MSG])
            pending = pending[MSG:]


async def serve(raw_port: int, transport_ports: tuple[int, int]) -> None:
    """Run the raw probe host and a Transport member until killed (bounded)."""
    host = _raw_host("server")
    host.set_stream_handler(SINK, _sink)
    host.set_stream_handler(ECHO, _echo)
    state = {"expected": -1, "seen": 0}
    transport: Transport | None = None

    def on_frames(sender: str, frames: list[bytes]) -> None:
        assert transport is not None
        for frame in frames:
            if frame.startswith(b"N"):
                state["expected"], state["seen"] = int(frame[1:]), 0
            elif frame.startswith(b"E"):
                transport.send(sender, frame)
            else:
                state["seen"] += 1
        if state["expected"] >= 0 and state["seen"] >= state["expected"]:
            transport.send(sender, DONE)
            state["expected"] = -1

    members = _members(transport_ports)
    transport = Transport(
        _key("server"), members["server"].multiaddr, members, on_frames, TransportLimits()
    )
    with trio.move_on_after(SERVER_MAX_SECONDS):
        async with (
            host.run([multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{raw_port}")]),
            trio.open_nursery() as nursery,
        ):
            await nursery.start(transport.run)
            print("READY", flush=True)
            await trio.sleep_forever()


# ---------------------------------------------------------------- client side


async def _read_exact(stream: INetStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.read(size - len(data))
        if not chunk:
            raise EOFError("stream closed")
        data += chunk
    return data


async def _rate(stream: INetStream, count: int, per_write: int, size: int) -> tuple[float, float]:
    """Send ``count`` frames of ``size`` bytes, ``per_write`` per write; frames/s, CPU us/frame."""
    frame = b"x" * size
    batch = encode_frames([frame] * per_write, max(size, 8))
    await stream.write(encode_frames([count.to_bytes(8, "big")]))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(count // per_write):
        await stream.write(batch)
    ack = await _read_exact(stream, len(DONE))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if ack != DONE:
        raise RuntimeError(f"unexpected ack {ack!r}")
    return count / elapsed, cpu / count * 1e6


async def _rtt(stream: INetStream, samples: int) -> list[float]:
    message = b"r" * MSG
    times: list[float] = []
    for i in range(samples + 100):
        t0 = time.perf_counter()
        await stream.write(message)
        await _read_exact(stream, MSG)
        if i >= 100:
            times.append(time.perf_counter() - t0)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


async def _transport_probe(
    members: dict[str, Member], count: int, samples: int, limits: TransportLimits
) -> tuple[float, float, list[float]]:
    done = trio.Event()
    echoed: list[trio.Event] = []

    def on_frames(sender: str, frames: list[bytes]) -> None:
        for frame in frames:
            if frame == DONE:
                done.set()
            elif frame.startswith(b"E") and echoed:
                echoed[-1].set()

    transport = Transport(_key("client"), members["client"].multiaddr, members, on_frames, limits)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        with trio.fail_after(30):
            while transport.get_connected_peers() != ["server"]:
                await trio.sleep(0.01)
        frame = b"x" * MSG
        transport.send("server", b"N%d" % count)
        t0, c0 = time.perf_counter(), time.process_time()
        sent = 0
        while sent < count:
            # Fill the queue, then yield so the writer can drain it.
            while sent < count and transport.send("server", frame):
                sent += 1
            await trio.sleep(0)
        with trio.fail_after(120):
            await done.wait()
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        times: list[float] = []
        for i in range(samples + 100):
            event = trio.Event()
            echoed.append(event)
            t1 = time.perf_counter()
            transport.send("server", b"E" + b"r" * (MSG - 1))
            with trio.fail_after(10):
                await event.wait()
            if i >= 100:
                times.append(time.perf_counter() - t1)
            echoed.clear()
        nursery.cancel_scope.cancel()
    return count / elapsed, cpu / count * 1e6, times


async def client(args: argparse.Namespace) -> None:
    """Start the server process, run every probe, print the table."""
    raw_port = _free_port()
    transport_ports = (_free_port(), _free_port())
    command = [
        sys.executable, "-m", "bench.net_probe", "--serve", "--raw-port", str(raw_port),
        "--transport-ports", f"{transport_ports[0]},{transport_ports[1]}",
    ]
    scale = 10 if args.quick else 1
    rows: list[tuple[str, str, str]] = []
    proc = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
    if True:
        try:
            assert proc.stdout is not None
            with trio.fail_after(60):
                line = b""
                while not line.endswith(b"READY\n"):
                    chunk = await proc.stdout.receive_some(64)
                    if not chunk:
                        raise RuntimeError("server exited before READY")
                    line += chunk
            host = _raw_host("client")
            server_id = ID.from_base58(_peer_id("server"))
            server_addr = multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{raw_port}")
            async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                await host.connect(PeerInfo(server_id, [server_addr]))
                sink = await host.new_stream(server_id, [SINK])
                await _rate(sink, 640, 1, MSG)  # warm-up
                rate, cpu = await _rate(sink, 20_000 // scale, 1, MSG)
                rows.append(("raw 200 B, 1 frame/write", f"{rate:,.0f} msg/s", f"{cpu:.0f}"))
                rate, cpu = await _rate(sink, 64 * (8_000 // scale), 64, MSG)
                rows.append(("raw 200 B, 64 frames/write", f"{rate:,.0f} msg/s", f"{cpu:.1f}"))
                rate, cpu = await _rate(sink, 4_000 // scale, 1, BIG)
                rows.append(
                    ("raw 64 KiB, 1 frame/write", f"{rate * BIG / 1e6:,.0f} MB/s", f"{cpu:.0f}")
                )
                echo = await host.new_stream(server_id, [ECHO])
                times = await _rtt(echo, args.rtt_samples)
                rows.append(
                    (
                        "raw RTT 200 B",
                        f"p50 {_percentile(times, 0.5) * 1e3:.2f} ms "
                        f"p99 {_percentile(times, 0.99) * 1e3:.2f} ms",
                        "",
                    )
                )
                await host.close()
            members = _members(transport_ports)
            limits = TransportLimits(max_batch_bytes=args.batch_kib * 1024)
            rate, cpu, times = await _transport_probe(
                members, 200_000 // scale, args.rtt_samples, limits
            )
            rows.append(
                (
                    f"Transport.send 200 B (batch {args.batch_kib} KiB)",
                    f"{rate:,.0f} msg/s",
                    f"{cpu:.1f}",
                )
            )
            rows.append(
                (
                    "Transport RTT 200 B",
                    f"p50 {_percentile(times, 0.5) * 1e3:.2f} ms "
                    f"p99 {_percentile(times, 0.99) * 1e3:.2f} ms",
                    "",
                )
            )
        finally:
            proc.terminate()
            with trio.move_on_after(10):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
    print(
        f"net_probe {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}, "
        f"rtt samples {args.rtt_samples}{', quick' if args.quick else ''}"
    )
    print(f"{'probe':34} {'result':34} {'client CPU us/msg':>18}")
    for name, result, cpu_text in rows:
        print(f"{name:34} {result:34} {cpu_text:>18}")


# ------------------------------------------------------------- cluster start-up

CLUSTER_FRAMES = 100
CLUSTER_WAIT_S = 90


def _cluster_members(size: int, base_port: int) -> dict[str, Member]:
    return {
        f"m{i}": Member(_peer_id(f"m{i}"), f"/ip4/127.0.0.1/tcp/{base_port + i}")
        for i in range(size)
    }


async def cluster_member(index: int, size: int, base_port: int) -> None:
    """One member: connect to all, broadcast, wait for everyone's frames, print JSON."""
    name = f"m{index}"
    members = _cluster_members(size, base_port)
    others = [n for n in members if n != name]
    counts = dict.fromkeys(others, 0)

    def on_frames(sender: str, frames: list[bytes]) -> None:
        counts[sender] += len(frames)

    transport = Transport(_key(name), members[name].multiaddr, members, on_frames)
    result: dict[str, Any] = {"member": name}
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        t0 = time.perf_counter()
        with trio.move_on_after(CLUSTER_WAIT_S):
            while len(transport.get_connected_peers()) < len(others):
                await trio.sleep(0.05)
        result["connect_s"] = round(time.perf_counter() - t0, 2)
        result["connected"] = len(transport.get_connected_peers())
        for i in range(CLUSTER_FRAMES):
            transport.broadcast(b"%s:%d" % (name.encode(), i))
        with trio.move_on_after(CLUSTER_WAIT_S):
            while any(c < CLUSTER_FRAMES for c in counts.values()):
                await trio.sleep(0.05)
        result["delivered_s"] = round(time.perf_counter() - t0, 2)
        result["all_delivered"] = all(c == CLUSTER_FRAMES for c in counts.values())
        result.update(reconnects=transport.metrics.reconnects, lost=transport.metrics.frames_lost)
        print(json.dumps(result), flush=True)
        await trio.sleep(3)  # keep serving while slower members finish
        nursery.cancel_scope.cancel()


async def cluster(size: int) -> None:
    """Start ``size`` member processes at once and summarise their start-up."""
    base_port = _free_port_block(size)
    procs = [
        await trio.lowlevel.open_process(
            [sys.executable, "-m", "bench.net_probe", "--member", str(i),
             "--cluster", str(size), "--base-port", str(base_port)],
            stdout=subprocess.PIPE,
        )
        for i in range(size)
    ]
    results: list[dict[str, Any]] = []

    async def collect(proc: trio.Process) -> None:
        assert proc.stdout is not None
        data = b""
        while chunk := await proc.stdout.receive_some(4096):
            data += chunk
        results.extend(json.loads(line) for line in data.decode().splitlines() if line)

    try:
        with trio.move_on_after(2 * CLUSTER_WAIT_S + 30):
            async with trio.open_nursery() as nursery:
                for proc in procs:
                    nursery.start_soon(collect, proc)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
    print(f"net_probe cluster {size} members, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for r in sorted(results, key=lambda r: int(r["member"][1:])):
        print(json.dumps(r))
    if len(results) == size:
        connect = [r["connect_s"] for r in results]
        print(
            f"all {size} reported; connected to all peers: "
            f"{sum(r['connected'] == size - 1 for r in results)}/{size}, "
            f"connect {min(connect)}-{max(connect)} s, "
            f"all frames delivered: {sum(r['all_delivered'] for r in results)}/{size}"
        )
    else:
        print(f"only {len(results)} of {size} members reported")


def _free_port_block(size: int) -> int:
    """Return a base port such that base..base+size-1 were free a moment ago."""
    for _ in range(50):
        base = _free_port()
        if base + size > 65535:
            continue
        try:
            socks = []
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise RuntimeError("no block of free ports found")


def main() -> None:
    """Parse arguments and run the client (default), the server, or a cluster."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one tenth of the messages")
    parser.add_argument("--rtt-samples", type=int, default=2000)
    parser.add_argument(
        "--batch-kib", type=int, default=TransportLimits().max_batch_bytes // 1024,
        help="Transport max_batch_bytes in KiB (default: the transport's default)",
    )
    parser.add_argument(
        "--cluster", type=int, default=0,
        help="instead: start N member processes at once and report their start-up",
    )
    parser.add_argument("--member", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--base-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--transport-ports", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.member >= 0:
        trio.run(cluster_member, args.member, args.cluster, args.base_port)
    elif args.cluster:
        trio.run(cluster, args.cluster)
    elif args.serve:
        ports = tuple(int(p) for p in args.transport_ports.split(","))
        trio.run(serve, args.raw_port, (ports[0], ports[1]))
    else:
        trio.run(client, args)


if __name__ == "__main__":
    main()
