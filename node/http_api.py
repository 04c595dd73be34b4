"""HTTP API of a node: FastAPI routes over a :class:`NodeService`, served by
:mod:`node.http_server` inside the node's trio loop.

The OpenAPI spec is served at ``/openapi.json`` (and browsable at ``/docs``).
Transactions are posted as raw canonical bytes (``application/octet-stream``)
or as JSON ``{"tx": "<hex>"}``; every rejection is a 4xx with a JSON body
``{"error": "<code>", "detail": "<reason>"}``. Bodies are size-limited.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Protocol

import trio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from node.blobstore import (
    BlobCorruptError,
    BlobHashMismatchError,
    BlobNotFoundError,
    BlobStore,
    BlobStoreFullError,
    BlobTooLargeError,
    is_blob_name,
)

logger = logging.getLogger("dmchain.http")

MAX_BATCH_TXS = 5_000
MAX_STATUS_BATCH = 1_000
MAX_WAIT_S = 60.0
MAX_LIST_ITEMS = 1_000  # data access listings
BLOB_READ_SIZE = 256 * 1024


class TxRejectedError(Exception):
    """A transaction refused at ingress; ``code`` is a stable machine-readable tag."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class NodeService(Protocol):
    """What the HTTP layer needs from a running node."""

    max_body_bytes: int

    def submit_tx(self, raw: bytes) -> bytes:
        """Admit one encoded transaction; returns its hash or raises TxRejectedError."""
        ...

    def get_tx_status(self, tx_hash: bytes) -> dict[str, Any] | None:
        """Return the transaction's status document, or None if unknown."""
        ...

    async def wait_tx(self, tx_hash: bytes, level: str, timeout: float) -> dict[str, Any] | None:
        """Wait until the transaction reaches ``level`` (confirmed/settled) or times out."""
        ...

    def get_status(self) -> dict[str, Any]:
        """Return the node status document."""
        ...

    def get_block(self, height: int) -> dict[str, Any] | None:
        """Return the block at ``height`` with its certificate, or None."""
        ...

    def get_account(self, account: bytes) -> dict[str, Any] | None:
        """Return an account document, or None."""
        ...

    def get_asset(self, asset_id: bytes) -> dict[str, Any] | None:
        """Return an asset document, or None."""
        ...

    def get_validators(self) -> list[dict[str, Any]]:
        """Return the validator set."""
        ...

    def get_supply(self) -> dict[str, Any]:
        """Return the supply breakdown."""
        ...

    def get_metrics_text(self) -> bytes:
        """Return the Prometheus exposition text."""
        ...

    # -- data access --

    def get_pre_key(self, account: bytes) -> dict[str, Any] | None:
        """Return the account's registered Umbral keys, or None."""
        ...

    def get_access_doc(self, request_id: bytes) -> dict[str, Any] | None:
        """Return an access request with its grant and recorded cfrags, or None."""
        ...

    def get_proxy_grants(self, proxy: bytes, from_height: int, limit: int) -> dict[str, Any]:
        """Return the grants naming ``proxy`` from ``from_height`` (bounded)."""
        ...

    def get_provider_requests(
        self, provider: bytes, from_height: int, limit: int
    ) -> dict[str, Any]:
        """Return the access requests to ``provider``'s assets from ``from_height`` (bounded)."""
        ...

    def get_blob_store(self) -> BlobStore:
        """Return the node's content-addressed blob store."""
    # -- training jobs --
    def get_job(self, job_id: bytes) -> dict[str, Any] | None:
        """Return a training job document, or None."""
        ...

    def get_executor(self, account: bytes) -> dict[str, Any] | None:
        """Return an executor document with its open jobs, or None."""
        ...


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _doc_or_404(doc: Any, code: str, detail: str) -> Response:
    return _error(404, code, detail) if doc is None else JSONResponse(doc)


def _parse_hex(value: str, size: int | None, what: str) -> bytes | JSONResponse:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return _error(400, "bad_hex", f"{what} must be hex")
    if size is not None and len(raw) != size:
        return _error(400, "bad_length", f"{what} must be {size} bytes")
    return raw


async def _read_body(request: Request, limit: int) -> bytes | JSONResponse:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return _error(413, "too_large", f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return _error(413, "too_large", f"body over {limit} bytes")
    return bytes(body)


def _decode_tx_body(request: Request, body: bytes) -> list[bytes] | JSONResponse:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/octet-stream"):
        return [body]
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "malformed_body", "body is neither raw bytes nor JSON")
    items = doc.get("txs") if isinstance(doc, dict) and "txs" in doc else None
    if items is None:
        items = [doc.get("tx")] if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items or len(items) > MAX_BATCH_TXS:
        return _error(400, "malformed_body", f'expected {{"tx": hex}} or {{"txs": [hex, ...]}} '
                      f"with at most {MAX_BATCH_TXS} items")
    out = []
    for item in items:
        if not isinstance(item, str):
            return _error(400, "malformed_body", "transactions must be hex strings")
        try:
            out.append(bytes.fromhex(item))
        except ValueError:
            return _error(400, "bad_hex", "transaction is not valid hex")
    return out


def _decode_hash_list(body: bytes) -> list[bytes] | JSONResponse:
    """Return the 32-byte hashes of a ``{"hashes": [hex, ...]}`` body, or the error."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "malformed_body", "body is not JSON")
    items = doc.get("hashes") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items or len(items) > MAX_STATUS_BATCH:
        return _error(
            400, "malformed_body", f'expected {{"hashes": [hex, ...]}} with 1 to {MAX_STATUS_BATCH}'
        )
    out = []
    for item in items:
        raw = _parse_hex(item, 32, "transaction hash") if isinstance(item, str) else None
        if not isinstance(raw, bytes):
            return _error(400, "bad_hash", "hashes must be 32-byte hex strings")
        out.append(raw)
    return out


async def _read_txs(request: Request, limit: int) -> list[bytes] | JSONResponse:
    """Return the transactions of a POST body, or the error response to send."""
    body = await _read_body(request, limit)
    if isinstance(body, JSONResponse):
        return body
    return _decode_tx_body(request, body)


def create_app(service: NodeService) -> FastAPI:
    """Return the FastAPI application for ``service``."""
    app = FastAPI(title="dmchain node API", version="1")

    @app.post("/v1/tx", summary="Submit one signed transaction (raw bytes or JSON hex)")
    async def post_tx(request: Request) -> Response:
        txs = await _read_txs(request, service.max_body_bytes)
        if isinstance(txs, JSONResponse):
            return txs
        if len(txs) != 1:
            return _error(400, "malformed_body", "use /v1/txs to submit several transactions")
        try:
            tx_hash = service.submit_tx(txs[0])
        except TxRejectedError as exc:
            logger.info("event=tx_rejected code=%s detail=%s", exc.code, exc.detail)
            return _error(400 if exc.code != "mempool_full" else 503, exc.code, exc.detail)
        return JSONResponse({"hash": tx_hash.hex()})

    @app.post("/v1/txs", summary='Submit several signed transactions: {"txs": [hex, ...]}')
    async def post_txs(request: Request) -> Response:
        txs = await _read_txs(request, service.max_body_bytes)
        if isinstance(txs, JSONResponse):
            return txs
        results: list[dict[str, str]] = []
        for raw in txs:
            try:
                results.append({"hash": service.submit_tx(raw).hex()})
            except TxRejectedError as exc:
                results.append({"error": exc.code, "detail": exc.detail})
        return JSONResponse({"results": results})

    @app.get("/v1/tx/{tx_hash}", summary="pending | confirmed | settled | failed, with times")
    async def get_tx(tx_hash: str) -> Response:
        raw = _parse_hex(tx_hash, 32, "transaction hash")
        if isinstance(raw, JSONResponse):
            return raw
        doc = service.get_tx_status(raw)
        return _doc_or_404(doc, "unknown_tx", "transaction not known")

    @app.post("/v1/txs/status", summary='Statuses of several transactions: {"hashes": [hex, ...]}')
    async def post_txs_status(request: Request) -> Response:
        body = await _read_body(request, 80 * MAX_STATUS_BATCH)
        if isinstance(body, JSONResponse):
            return body
        hashes = _decode_hash_list(body)
        if isinstance(hashes, JSONResponse):
            return hashes
        return JSONResponse({"statuses": [service.get_tx_status(h) for h in hashes]})

    @app.get("/v1/tx/{tx_hash}/wait", summary="Long-poll until confirmed or settled")
    async def wait_tx(tx_hash: str, level: str = "confirmed", timeout: float = 10.0) -> Response:
        raw = _parse_hex(tx_hash, 32, "transaction hash")
        if isinstance(raw, JSONResponse):
            return raw
        if level not in ("confirmed", "settled"):
            return _error(400, "bad_level", "level must be confirmed or settled")
        doc = await service.wait_tx(raw, level, max(0.0, min(timeout, MAX_WAIT_S)))
        return _doc_or_404(doc, "unknown_tx", "transaction not known")

    @app.get("/v1/status", summary="Height, settled height, view, leader, peers, role")
    async def get_status() -> Response:
        return JSONResponse(service.get_status())

    @app.get("/v1/blocks/{height}", summary="A committed block with its certificate")
    async def get_block(height: int) -> Response:
        doc = service.get_block(height) if height >= 0 else None
        return _doc_or_404(doc, "unknown_block", "no such block")

    @app.get("/v1/accounts/{account}", summary="Balance, nonce and stake of an account")
    async def get_account(account: str) -> Response:
        raw = _parse_hex(account, None, "account")
        if isinstance(raw, JSONResponse):
            return raw
        doc = service.get_account(raw)
        return _doc_or_404(doc, "unknown_account", "no such account")

    @app.get("/v1/assets/{asset_id}", summary="A registered data asset")
    async def get_asset(asset_id: str) -> Response:
        raw = _parse_hex(asset_id, None, "asset id")
        if isinstance(raw, JSONResponse):
            return raw
        doc = service.get_asset(raw)
        return _doc_or_404(doc, "unknown_asset", "no such asset")

    @app.get("/v1/validators", summary="The validator set with stakes and roles")
    async def get_validators() -> Response:
        return JSONResponse({"validators": service.get_validators()})

    @app.get("/v1/supply", summary="Supply breakdown: balances, stakes, escrow, unbonding, burned")
    async def get_supply() -> Response:
        return JSONResponse(service.get_supply())

    @app.get("/metrics", summary="Prometheus metrics")
    async def get_metrics() -> Response:
        return Response(service.get_metrics_text(), media_type="text/plain; version=0.0.4")

    # -- data access ------------------------------------------------

    @app.get("/v1/accounts/{account}/pre_key", summary="An account's registered Umbral keys")
    async def get_pre_key(account: str) -> Response:
        raw = _parse_hex(account, 32, "account")
        if isinstance(raw, JSONResponse):
            return raw
        doc = service.get_pre_key(raw)
        return _doc_or_404(doc, "no_pre_key", "account has registered no PRE key")

    @app.get("/v1/access/{request_id}", summary="An access request, its grant and its cfrags")
    async def get_access(request_id: str) -> Response:
        raw = _parse_hex(request_id, 32, "request id")
        if isinstance(raw, JSONResponse):
            return raw
        doc = service.get_access_doc(raw)
        return _doc_or_404(doc, "unknown_request", "no such access request")

    @app.get("/v1/proxy/{proxy}/grants", summary="Grants naming a proxy validator (bounded)")
    async def get_proxy_grants(proxy: str, from_height: int = 0, limit: int = 100) -> Response:
        raw = _parse_hex(proxy, 32, "proxy key")
        if isinstance(raw, JSONResponse):
            return raw
        limit = max(1, min(limit, MAX_LIST_ITEMS))
        return JSONResponse(service.get_proxy_grants(raw, max(0, from_height), limit))

    @app.get("/v1/providers/{provider}/requests", summary="Requests to a provider's assets")
    async def get_provider_requests(
        provider: str, from_height: int = 0, limit: int = 100
    ) -> Response:
        raw = _parse_hex(provider, 32, "provider account")
        if isinstance(raw, JSONResponse):
            return raw
        limit = max(1, min(limit, MAX_LIST_ITEMS))
        return JSONResponse(service.get_provider_requests(raw, max(0, from_height), limit))

    @app.put("/v1/blobs/{name}", summary="Store a ciphertext blob under its SHA-256 (streamed)")
    async def put_blob(name: str, request: Request) -> Response:
        return await _put_blob(service.get_blob_store(), name, request)

    @app.get("/v1/blobs/{name}", summary="Fetch a blob; its hash is verified before serving")
    async def get_blob(name: str) -> Response:
        return await _get_blob(service.get_blob_store(), name)

    @app.head("/v1/blobs/{name}", summary="Whether a blob is stored, and its size")
    async def head_blob(name: str) -> Response:
        store = service.get_blob_store()
        if not is_blob_name(name):
            return _error(400, "bad_blob_name", "a blob name is 64 lowercase hex characters")
        try:
            size = store.get_size(name)
        except BlobNotFoundError:
            return Response(status_code=404)
        return Response(headers={"content-length": str(size)})
    # -- training jobs --
    @app.get("/v1/jobs/{job_id}", summary="A training job: executors, posts, result, settlement")
    async def get_job(job_id: str) -> Response:
        raw = _parse_hex(job_id, 32, "job id")
        if isinstance(raw, JSONResponse):
            return raw
        return _doc_or_404(service.get_job(raw), "unknown_job", "no such job")

    @app.get("/v1/executors/{account}", summary="A registered executor and its open jobs")
    async def get_executor(account: str) -> Response:
        raw = _parse_hex(account, 32, "account")
        if isinstance(raw, JSONResponse):
            return raw
        return _doc_or_404(service.get_executor(raw), "unknown_executor", "no such executor")

    # KYC audit routes (node/kyc_api.py)
    from node.kyc_api import register_kyc_routes

    register_kyc_routes(app, service)  # type: ignore[arg-type]
    return app


async def _put_blob(store: BlobStore, name: str, request: Request) -> Response:
    """Stream a PUT body into the store; 400 on a bad name or hash, 413 past the size limit,
    507 when a new blob would take the store past its total quota (a blob already
    stored is accepted again without being counted twice)."""
    if not is_blob_name(name):
        return _error(400, "bad_blob_name", "a blob name is 64 lowercase hex characters")
    limit = store.max_blob_size
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return _error(413, "blob_too_large", f"blob over the node's limit of {limit} bytes")
    present = store.has(name)
    if (
        not present
        and declared is not None
        and declared.isdigit()
        and not store.is_room_for(int(declared))
    ):
        return _store_full(name, store)
    fd, tmp_path = store.create_temp_file()
    hasher = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    logger.info("event=blob_refused name=%s reason=too_large", name)
                    detail = f"blob over the node's limit of {limit} bytes"
                    return _error(413, "blob_too_large", detail)
                if not present and not store.is_room_for(size):
                    return _store_full(name, store)
                hasher.update(chunk)
                out.write(chunk)
        if hasher.hexdigest() != name:
            logger.info("event=blob_refused name=%s reason=hash_mismatch", name)
            return _error(400, "hash_mismatch", f"body hashes to {hasher.hexdigest()}, not {name}")
        await trio.to_thread.run_sync(store.adopt_temp_file, tmp_path, name)
    except BlobStoreFullError:
        return _store_full(name, store)
    except (BlobHashMismatchError, BlobTooLargeError) as exc:
        return _error(400, "blob_refused", str(exc))
    finally:
        tmp_path.unlink(missing_ok=True)
    logger.info("event=blob_stored name=%s size=%d", name, size)
    return JSONResponse({"name": name, "size": size}, status_code=201)


def _store_full(name: str, store: BlobStore) -> Response:
    """Log and answer a put refused because the blob store is at its quota (507)."""
    logger.info("event=blob_refused name=%s reason=store_full", name)
    return _error(
        507,
        "blob_store_full",
        f"the node's blob store is full (quota {store.max_total_bytes} bytes); "
        "store the blob on another node",
    )


async def _get_blob(store: BlobStore, name: str) -> Response:
    """Serve a blob only after re-hashing it; a tampered blob is quarantined, never served."""
    from fastapi.responses import StreamingResponse

    if not is_blob_name(name):
        return _error(400, "bad_blob_name", "a blob name is 64 lowercase hex characters")
    try:
        size = store.get_size(name)
    except BlobNotFoundError:
        return _error(404, "unknown_blob", "no such blob on this node")
    intact = await trio.to_thread.run_sync(store.is_intact, name)
    if not intact:
        logger.warning("event=blob_corrupt name=%s action=quarantined", name)
        return _error(
            503, "blob_corrupt", "the blob is corrupt on this node and was quarantined; "
            "fetch it from another replica"
        )

    async def chunks() -> Any:
        try:
            for part in store.iter_blob(name, BLOB_READ_SIZE):
                yield part
                await trio.lowlevel.checkpoint()
        except BlobCorruptError:
            logger.warning("event=blob_corrupt name=%s action=quarantined_mid_transfer", name)
            raise

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={"content-length": str(size)},
    )
