"""Open a real libp2p connection to a node and write raw bytes on its frames protocol.

Run as a script by the integration tests (in its own process, its own trio loop)::

    python p2p_intruder.py --peer-id ID --addr MULTIADDR (--home NODE_HOME | --stranger)
        --mode junk|oversized|frames

``--home`` borrows a member's libp2p identity from its keys directory;
``--stranger`` uses a fresh key that no genesis lists. Prints one line
``outcome=...`` and exits 0 whatever the node did (the test reads the node's
log and status); exits 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import multiaddr
import trio
from libp2p import new_host
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from node.framing import encode_frames
from node.keys import compute_identity_key_pair, load_node_keys
from node.transport import FRAMES_PROTOCOL

WAIT_S = 20.0


def compute_payload(mode: str) -> bytes:
    """Return the bytes written for ``mode``."""
    if mode == "oversized":  # a length prefix far above any frame limit
        return b"\xff\xff\xff\xf0" + b"garbage"
    if mode == "junk":  # well-framed garbage on every channel, then an unknown channel
        bodies = [bytes([ch]) + b"\xde\xad\xbe\xef" * 8 for ch in range(1, 7)]
        bodies += [bytes([ch]) for ch in range(1, 7)]
        bodies += [b"\xff" + os.urandom(64), b"\x03\x06\x01\x03\x02"]
        return encode_frames(bodies)
    if mode == "frames":
        return encode_frames([b"\x03" + b"\x00" * 16])
    raise SystemExit(2)


async def process_intrusion(args: argparse.Namespace) -> str:
    """Connect, open the frames protocol, write, and report what happened."""
    if args.stranger:
        key_pair = compute_identity_key_pair(os.urandom(32))
    else:
        key_pair = load_node_keys(Path(args.home)).get_identity_key_pair()
    host = new_host(key_pair=key_pair)
    target = ID.from_base58(args.peer_id)
    print(f"intruder peer_id={host.get_id().to_base58()}", flush=True)
    async with host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
        try:
            with trio.fail_after(WAIT_S):
                await host.connect(PeerInfo(target, [multiaddr.Multiaddr(args.addr)]))
                stream = await host.new_stream(target, [FRAMES_PROTOCOL])
                await stream.write(compute_payload(args.mode))
                while await stream.read(1024):
                    pass
            return "outcome=eof"
        except trio.TooSlowError:
            return "outcome=still_open"
        except Exception as exc:
            return f"outcome=closed error={type(exc).__name__}"


def main() -> int:
    """Parse arguments and run one intrusion."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--peer-id", required=True)
    parser.add_argument("--addr", required=True)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--home")
    group.add_argument("--stranger", action="store_true")
    parser.add_argument("--mode", choices=["junk", "oversized", "frames"], required=True)
    args = parser.parse_args()
    print(trio.run(process_intrusion, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
