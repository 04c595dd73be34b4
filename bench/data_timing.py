"""Time ``dmchain data publish``, ``request`` and ``fetch`` on a small real cluster.

Starts a testnet (default 4 PBFT + 1 PoS, epoch 4) in a fresh directory, a
proxy process beside each PBFT node and the provider agent (m=3 of n=4),
funds a provider and a consumer wallet from ``clients.json``, then for each
size runs the three commands as a user would (separate processes) and
prints the wall time of each command and the phases the commands report:

* publish: encrypt (AES-256-GCM chunks + commitment), upload (3 replicas),
  register (REGISTER_PRE_KEY if needed + REGISTER_ASSET confirmed);
* request: REGISTER_PRE_KEY if needed + REQUEST_ACCESS confirmed;
* grant (from block timestamps): request block -> grant block (the agent's
  GRANT_ACCESS) -> block recording the m-th valid cfrag (PoS settlement of
  the grant, then the proxies re-encrypt and publish);
* fetch: verify the m capsule fragments and recover the key, download
  (hash-verified), decrypt + content-hash check. Command wall times include
  the Python start-up of the CLI (about 1-5 s here).

Everything it started is stopped at the end; the directory is removed unless
``--keep``.

Usage: python -m bench.data_timing [--sizes-mib 1 100] [--pbft 4 --pos 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from node.cluster import get_cluster_nodes, process_cluster_down, process_cluster_up
from node.testnet import TestnetSpec, get_client_seeds, process_write_testnet

DMCHAIN = [sys.executable, "-m", "node.cli"]


def _run(argv: list[str], timeout: float) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [*DMCHAIN, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"dmchain {' '.join(argv[:2])} failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout), elapsed


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*DMCHAIN, *argv], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def main(argv: list[str] | None = None) -> int:
    """Run the timing; prints one block per size and a JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--pbft", type=int, default=4)
    parser.add_argument("--pos", type=int, default=1)
    parser.add_argument("--epoch-length", type=int, default=4)
    parser.add_argument("--base-port", type=int, default=27400)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="dmchain-data-timing-"))
    home = root / "testnet"
    process_write_testnet(
        TestnetSpec(out=home, pbft=args.pbft, pos=args.pos, clients=4,
                    base_port=args.base_port, epoch_length=args.epoch_length)
    )
    genesis = json.loads((home / "genesis.json").read_text())
    genesis["params"]["access_timeout"] = 200
    (home / "genesis.json").write_text(json.dumps(genesis, indent=2, sort_keys=True))
    procs: list[subprocess.Popen[bytes]] = []
    results: list[dict[str, Any]] = []
    try:
        nodes = process_cluster_up(home, timeout=180)
        urls = [n.config.http_url for n in nodes]
        pbft_names = [v["name"] for v in genesis["validators"] if "pbft" in v["roles"]][:4]
        keys = {v["name"]: v["consensus_key"] for v in genesis["validators"]}
        seeds = get_client_seeds(home)
        wallets = {}
        for label, index in (("provider", 0), ("consumer", 1)):
            wallets[label] = root / label
            _run(["wallet", "new", "--out", str(wallets[label]), "--seed-hex", seeds[index].hex()],
                 60)
        by_name = {n.config.name: n for n in get_cluster_nodes(home)}
        for name in pbft_names:
            node_home = by_name[name].config.home
            procs.append(_spawn(["proxy", "run", "--home", str(node_home), "--interval", "0.3"],
                                node_home / "proxy.log"))
        procs.append(_spawn(
            ["agent", "run", "--wallet", str(wallets["provider"]), "--node", urls[0],
             "--threshold", "3", "--proxies", str(len(pbft_names)), "--interval", "0.3",
             "--candidates", ",".join(keys[n] for n in pbft_names)],
            root / "agent.log",
        ))
        common = ["--node", urls[1], "--blob-nodes", ",".join(urls[:3]), "--quiet"]
        for size in args.sizes_mib:
            source = root / f"plain-{size}.bin"
            with source.open("wb") as out:
                for _ in range(size):
                    out.write(os.urandom(1024 * 1024))
            pub, t_pub = _run(["data", "publish", str(source), "--wallet",
                               str(wallets["provider"]), "--tags", "bench",
                               "--license", "CC-BY-4.0", *common], 1800)
            req, t_req = _run(["data", "request", str(pub["asset_id"]), "--wallet",
                               str(wallets["consumer"]), *common], 300)
            t_grant = _wait_delivered(urls[1], str(req["request_id"]))
            target = root / f"fetched-{size}.bin"
            fetched, t_fetch = _run(["data", "fetch", str(req["request_id"]), "--wallet",
                                     str(wallets["consumer"]), "--out", str(target), *common],
                                    1800)
            same = _same_file(source, target)
            row = {
                "size_mib": size,
                "publish_s": round(t_pub, 3),
                "publish_phases": {k: round(v, 3) for k, v in pub["phases"].items()},
                "request_s": round(t_req, 3),
                "grant_phases": t_grant,
                "fetch_s": round(t_fetch, 3),
                "fetch_phases": {k: round(v, 3) for k, v in fetched["phases"].items()},
                "byte_identical": same,
            }
            results.append(row)
            print(f"--- {size} MiB: publish {t_pub:.2f} s {row['publish_phases']}; "
                  f"request {t_req:.2f} s; grant {t_grant}; "
                  f"fetch {t_fetch:.2f} s {row['fetch_phases']}; identical={same}", flush=True)
            source.unlink()
            target.unlink()
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(proc.pid, signal.SIGKILL)
        process_cluster_down(home)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"cluster": f"{args.pbft} PBFT + {args.pos} PoS",
                      "results": results}, indent=2))
    return 0


def _wait_delivered(url: str, request_id: str, timeout: float = 600.0) -> dict[str, float]:
    """Wait until the request has m cfrags on chain; return chain-timed phases (s).

    ``request_to_grant_s`` and ``grant_to_delivered_s`` come from the block
    timestamps of the request, the grant and the block that recorded the
    m-th valid cfrag (the access's settled height).
    """
    from node.client import NodeClient

    started = time.perf_counter()
    with NodeClient(url) as client:
        while time.perf_counter() - started < timeout:
            doc = client.get_access(bytes.fromhex(request_id))
            grant = None if doc is None else doc["grant"]
            if (
                doc is not None
                and grant is not None
                and len(grant["cfrag_proxies"]) >= grant["threshold"]
            ):
                stamp = {
                    h: client.get_block(h)["timestamp_ms"]
                    for h in (doc["height"], grant["height"], doc["settled_height"])
                }
                return {
                    "request_to_grant_s": (stamp[grant["height"]] - stamp[doc["height"]]) / 1e3,
                    "grant_to_delivered_s": (stamp[doc["settled_height"]] - stamp[grant["height"]])
                    / 1e3,
                }
            time.sleep(0.05)
    raise RuntimeError(f"request {request_id} not delivered within {timeout:.0f} s")


def _same_file(a: Path, b: Path) -> bool:
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


if __name__ == "__main__":
    sys.exit(main())
