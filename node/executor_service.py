"""The executor service: register, watch for assigned jobs, train pinned, post, serve models.

``dmchain executor run`` runs :class:`ExecutorService` in the foreground:

1. registers the wallet as executor (``REGISTER_EXECUTOR`` with stake, fee and
   the URL of its model server) unless it is already registered and active;
2. polls ``GET /v1/executors/{account}`` for the open jobs assigned to it;
3. for each new job: reads the job, obtains each dataset's plaintext through
   a :class:`node.jobdata.DatasetSource` (the data access grant path,
   :class:`node.job_grant_source.GrantPathSource`) and the buyer's validation
   data through :class:`node.jobdata.SealedKeySource` (its key sealed to the
   executor by the buyer, read from the job document where the buyer's
   ``JOB_KEYS`` put it), both checked against the on-chain hashes (a job
   whose data or key has not arrived yet is retried on the next poll),
   writes the inputs to its work directory, runs ``python -m ml.worker`` in
   a fresh interpreter pinned to the spec's execution profile
   (:func:`ml.worker.compute_worker_env`), and posts the result
   (``POST_RESULT``: digest, weights hash, metric, contributions, kept counts);
4. keeps the model and serves it sealed to the buyer's account key at
   ``GET /v1/models/{job_id}`` on its own HTTP port.

A job that fails in the worker (bad input, divergence) is logged and not
retried; the chain's deadline refunds the buyer if no t executors agree.
Every queue is bounded: at most ``MAX_JOBS_PER_POLL`` jobs per poll and
``MAX_TRACKED`` remembered job ids.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from consensus.crypto import compute_public_key
from ledger.tx import TxKind
from ml.data import DatasetError, decode_dataset
from ml.digest import ResultError, compute_result_digest, compute_weights_hash, decode_result
from ml.spec import SpecError, encode_spec, parse_spec_json
from ml.worker import compute_worker_command, compute_worker_env
from node.client import ClientError, NodeClient, Signer
from node.jobdata import DatasetSource, JobDataError, SealedKeySource, seal_to_account

logger = logging.getLogger("dmchain.executor")

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_JOBS_PER_POLL = 8
MAX_TRACKED = 10_000
WORKER_TIMEOUT_S = 1_800
MAX_MODEL_BYTES = 64 * 1024 * 1024
_JOB_PATH = re.compile(r"^/v1/models/([0-9a-f]{64})$")


class ExecutorError(RuntimeError):
    """The executor cannot register or reach its node."""


@dataclass
class ExecutorConfig:
    """What one executor process needs."""

    seed: bytes
    node_url: str
    work_dir: Path
    stake: int
    fee: int
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    poll_s: float = 0.5


class _ModelHandler(BaseHTTPRequestHandler):
    """Serve ``GET /v1/models/{job_id}``: the model sealed to the job's buyer."""

    models_dir: Path

    def do_GET(self) -> None:
        match = _JOB_PATH.match(self.path)
        path = self.models_dir / f"{match.group(1)}.sealed" if match else None
        if path is None or not path.is_file():
            self.send_response(404)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "unknown_model", "detail": "no model for that job"}')
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("event=http %s", format % args)


class ExecutorService:
    """One executor: its wallet, node client, data source, work directory and model server."""

    def __init__(
        self, config: ExecutorConfig, datasets: DatasetSource, validation: SealedKeySource
    ) -> None:
        self.config = config
        self.datasets = datasets
        self.validation = validation
        self.account = compute_public_key(config.seed)
        self.client = NodeClient(config.node_url, timeout=30.0)
        self.jobs_dir = Path(config.work_dir) / "jobs"
        self.models_dir = Path(config.work_dir) / "models"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.done: OrderedDict[bytes, str] = OrderedDict()
        self.stopping = threading.Event()
        handler = type("Handler", (_ModelHandler,), {"models_dir": self.models_dir})
        self.server = ThreadingHTTPServer((config.listen_host, config.listen_port), handler)
        self.endpoint = f"http://{config.listen_host}:{self.server.server_address[1]}"
        self.signer: Signer | None = None

    # -- chain access -----------------------------------------------------------
    def _sign_submit(self, kind: TxKind, payload: list[Any]) -> dict[str, Any]:
        if self.signer is None:
            self.signer = Signer(self.config.seed, self.client.get_status()["chain_id"])
        self.signer.nonce = self.client.get_account(self.account)["nonce"]
        tx_hash = self.client.submit(self.signer.sign(kind, payload))
        doc = {"status": "pending"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and doc.get("status") not in (
            "confirmed", "settled", "failed"
        ):
            try:
                doc = self.client.wait(tx_hash, "confirmed", 10.0)
            except ClientError as exc:
                if exc.code != "unknown_tx":
                    raise
                time.sleep(0.2)
        return doc

    def process_register(self) -> None:
        """Register (stake, fee, endpoint) unless already registered, active, same endpoint."""
        try:
            doc = self.client.get_executor(self.account)
        except ClientError as exc:
            if exc.code != "unknown_executor":
                raise
            doc = None
        if doc is not None and doc["active"] and doc["endpoint"] == self.endpoint:
            logger.info("event=executor_registered account=%s already", self.account.hex())
            return
        stake = self.config.stake if doc is None or not doc["active"] else 0
        result = self._sign_submit(
            TxKind.REGISTER_EXECUTOR, [stake, self.config.fee, self.endpoint]
        )
        if result.get("status") == "failed" or result.get("status") == "pending":
            raise ExecutorError(f"registration failed: {result}")
        logger.info(
            "event=executor_registered account=%s endpoint=%s stake=%d fee=%d",
            self.account.hex(), self.endpoint, stake, self.config.fee,
        )

    # -- jobs ------------------------------------------------------------------
    def _remember(self, job_id: bytes, outcome: str) -> None:
        self.done[job_id] = outcome
        while len(self.done) > MAX_TRACKED:
            self.done.popitem(last=False)

    def process_poll(self) -> int:
        """Run every new open job assigned to this executor; returns how many were posted."""
        doc = self.client.get_executor(self.account)
        posted = 0
        fresh = [bytes.fromhex(j) for j in doc["open_jobs"] if bytes.fromhex(j) not in self.done]
        for job_id in fresh[:MAX_JOBS_PER_POLL]:
            if self.stopping.is_set():
                break
            try:
                outcome = self.process_job(job_id)
            except JobDataError as exc:
                logger.info("event=job_waiting job=%s reason=%s", job_id.hex(), exc)
                continue
            self._remember(job_id, outcome)
            posted += outcome == "posted"
        return posted

    def process_job(self, job_id: bytes) -> str:
        """Train one job and post its result; returns "posted", "skipped" or "failed".

        Raises JobDataError when an input is not available yet (retry later).
        """
        job = self.client.get_job(job_id)
        if job["status"] != "open" or any(
            p["executor"] == self.account.hex() for p in job["posts"]
        ):
            return "skipped"
        try:
            spec = parse_spec_json(json.dumps(job["spec"]))
        except (SpecError, TypeError) as exc:
            logger.warning("event=job_failed job=%s reason=bad spec: %s", job_id.hex(), exc)
            return "failed"
        job_dir = self.jobs_dir / job_id.hex()
        job_dir.mkdir(parents=True, exist_ok=True)
        spec_path = job_dir / "spec.bin"
        spec_path.write_bytes(encode_spec(spec))
        # the validation key first: until the buyer's JOB_KEYS is on chain, wait
        validation = self.validation.get_validation(job)
        try:
            decode_dataset(validation)
        except DatasetError as exc:
            logger.warning("event=job_failed job=%s reason=validation: %s", job_id.hex(), exc)
            return "failed"
        provider_paths = []
        for index, asset_id in enumerate(spec.datasets):
            plaintext = self.datasets.get_dataset(asset_id, self.client.get_asset(asset_id))
            path = job_dir / f"provider{index}.ds"
            path.write_bytes(plaintext)
            provider_paths.append(str(path))
        validation_path = job_dir / "validation.ds"
        validation_path.write_bytes(validation)
        out_path = job_dir / "result.bin"
        command = compute_worker_command(
            str(spec_path), provider_paths, str(validation_path), str(out_path)
        )
        started = time.monotonic()
        proc = subprocess.run(
            command, env=compute_worker_env(spec.profile), cwd=REPO_ROOT, capture_output=True,
            text=True, timeout=WORKER_TIMEOUT_S, check=False,
        )
        if proc.returncode != 0:
            logger.warning(
                "event=job_failed job=%s exit=%d stderr=%s",
                job_id.hex(), proc.returncode, proc.stderr.strip()[-500:],
            )
            return "failed"
        try:
            result = decode_result(out_path.read_bytes())
        except (ResultError, OSError) as exc:
            logger.warning("event=job_failed job=%s reason=result: %s", job_id.hex(), exc)
            return "failed"
        digest = compute_result_digest(result)
        weights_hash = compute_weights_hash(result.weights)
        if result.spec_hash.hex() != job["spec_hash"]:
            logger.warning("event=job_failed job=%s reason=spec hash mismatch", job_id.hex())
            return "failed"
        (job_dir / "model.bin").write_bytes(result.weights)
        sealed = seal_to_account(bytes.fromhex(job["buyer"]), result.weights)
        tmp = self.models_dir / f"{job_id.hex()}.tmp"
        tmp.write_bytes(sealed)
        tmp.replace(self.models_dir / f"{job_id.hex()}.sealed")
        outcome = self._sign_submit(
            TxKind.POST_RESULT,
            [
                job_id,
                digest,
                weights_hash,
                result.metric_ppm,
                list(result.contributions_ppm),
                result.get_kept_counts(),
            ],
        )
        logger.info(
            "event=job_posted job=%s digest=%s metric_ppm=%d train_s=%.1f status=%s reason=%s",
            job_id.hex(), digest.hex(), result.metric_ppm, time.monotonic() - started,
            outcome.get("status"), outcome.get("reason", ""),
        )
        return "posted" if outcome.get("status") in ("confirmed", "settled") else "failed"

    # -- lifecycle --------------------------------------------------------------
    def run(self) -> None:
        """Serve models and poll for jobs until :meth:`stop` (or SIGTERM/SIGINT)."""
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            self.process_register()
            logger.info("event=executor_ready account=%s endpoint=%s",
                        self.account.hex(), self.endpoint)
            while not self.stopping.is_set():
                try:
                    self.process_poll()
                except ClientError as exc:
                    logger.warning("event=poll_failed reason=%s", exc)
                self.stopping.wait(self.config.poll_s)
        finally:
            self.server.shutdown()
            self.server.server_close()
            self.client.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current job."""
        self.stopping.set()


def install_signal_handlers(service: ExecutorService) -> None:
    """Stop ``service`` cleanly on SIGTERM and SIGINT."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: service.stop())
