"""Python client of a dmchain node: sign, submit, wait, query.

Used by the CLI (``dmchain tx``, ``dmchain query``), the tests and bench/.
Signing is local: the private seed never leaves the process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from consensus.crypto import compute_public_key
from ledger.tx import TxKind, compute_signed_tx


class ClientError(RuntimeError):
    """The node refused a request or could not be reached; ``code`` says why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass
class Signer:
    """An account: its private seed, public key and the next nonce to use."""

    seed: bytes
    chain_id: str
    nonce: int = 0

    @property
    def public_key(self) -> bytes:
        """The account's 32-byte public key (its address)."""
        return compute_public_key(self.seed)

    def sign(self, kind: TxKind, payload: list[Any], fee: int = 0) -> bytes:
        """Return a signed transaction with the next nonce, and advance the nonce."""
        raw = compute_signed_tx(self.seed, self.chain_id, kind, self.nonce, payload, fee=fee)
        self.nonce += 1
        return raw

    def sign_transfer(self, to: bytes, amount: int, fee: int = 0) -> bytes:
        """Return a signed transfer of ``amount`` base units to ``to``."""
        return self.sign(TxKind.TRANSFER, [to, amount], fee)


class NodeClient:
    """A synchronous HTTP client of one node."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, response: httpx.Response) -> Any:
        try:
            doc = response.json()
        except ValueError as exc:
            raise ClientError("bad_response", f"HTTP {response.status_code}: not JSON") from exc
        if response.status_code >= 400:
            if isinstance(doc, dict) and "error" in doc:
                raise ClientError(str(doc["error"]), str(doc.get("detail", "")))
            raise ClientError("http_error", f"HTTP {response.status_code}: {doc}")
        return doc

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError("unreachable", f"{self.base_url}{path}: {exc}") from exc
        return self._json(response)

    def submit(self, raw: bytes) -> bytes:
        """Submit one signed transaction; returns its hash or raises ClientError."""
        doc = self._request(
            "POST", "/v1/tx", content=raw, headers={"content-type": "application/octet-stream"}
        )
        return bytes.fromhex(doc["hash"])

    def submit_many(self, raws: list[bytes]) -> list[dict[str, str]]:
        """Submit several transactions in one request; one result per transaction."""
        doc = self._request("POST", "/v1/txs", json={"txs": [r.hex() for r in raws]})
        return list(doc["results"])

    def get_tx(self, tx_hash: bytes) -> dict[str, Any]:
        """Return the transaction's status document."""
        return dict(self._request("GET", f"/v1/tx/{tx_hash.hex()}"))

    def wait(
        self, tx_hash: bytes, level: str = "confirmed", timeout: float = 10.0
    ) -> dict[str, Any]:
        """Long-poll until the transaction reaches ``level`` or ``timeout`` passes."""
        doc = self._request(
            "GET",
            f"/v1/tx/{tx_hash.hex()}/wait",
            params={"level": level, "timeout": timeout},
            timeout=timeout + 5,
        )
        return dict(doc)

    def get_status(self) -> dict[str, Any]:
        """Return the node's status document."""
        return dict(self._request("GET", "/v1/status"))

    def get_account(self, account: bytes) -> dict[str, Any]:
        """Return balance, nonce and stake of an account."""
        return dict(self._request("GET", f"/v1/accounts/{account.hex()}"))

    def get_block(self, height: int) -> dict[str, Any]:
        """Return a committed block with its certificate."""
        return dict(self._request("GET", f"/v1/blocks/{height}"))

    def get_supply(self) -> dict[str, Any]:
        """Return the supply breakdown."""
        return dict(self._request("GET", "/v1/supply"))

    def get_validators(self) -> list[dict[str, Any]]:
        """Return the validator set."""
        return list(self._request("GET", "/v1/validators")["validators"])

    def get_metrics(self) -> str:
        """Return the Prometheus text."""
        try:
            return self.http.get("/metrics").text
        except httpx.HTTPError as exc:
            raise ClientError("unreachable", str(exc)) from exc

    # -- data access --

    def get_pre_key(self, account: bytes) -> dict[str, Any] | None:
        """Return the account's registered Umbral keys (hex), or None if none is registered."""
        try:
            return dict(self._request("GET", f"/v1/accounts/{account.hex()}/pre_key"))
        except ClientError as exc:
            if exc.code == "no_pre_key":
                return None
            raise

    def get_access(self, request_id: bytes) -> dict[str, Any] | None:
        """Return an access request with its grant and cfrags, or None if unknown."""
        try:
            return dict(self._request("GET", f"/v1/access/{request_id.hex()}"))
        except ClientError as exc:
            if exc.code == "unknown_request":
                return None
            raise

    def get_asset(self, asset_id: bytes) -> dict[str, Any]:
        """Return a registered asset (raises ClientError ``unknown_asset``)."""
        return dict(self._request("GET", f"/v1/assets/{asset_id.hex()}"))

    def get_proxy_grants(self, proxy: bytes, from_height: int, limit: int = 100) -> dict[str, Any]:
        """Return the grants naming ``proxy`` from ``from_height``."""
        params = {"from_height": from_height, "limit": limit}
        return dict(self._request("GET", f"/v1/proxy/{proxy.hex()}/grants", params=params))

    def get_provider_requests(
        self, provider: bytes, from_height: int, limit: int = 100
    ) -> dict[str, Any]:
        """Return access requests to ``provider``'s assets from ``from_height``."""
        params = {"from_height": from_height, "limit": limit}
        return dict(
            self._request("GET", f"/v1/providers/{provider.hex()}/requests", params=params)
        )
    # -- training jobs --
    def get_job(self, job_id: bytes) -> dict[str, Any]:
        """Return a training job document (raises ClientError unknown_job if none)."""
        return dict(self._request("GET", f"/v1/jobs/{job_id.hex()}"))

    def get_executor(self, account: bytes) -> dict[str, Any]:
        """Return an executor document (raises ClientError unknown_executor if none)."""
        return dict(self._request("GET", f"/v1/executors/{account.hex()}"))


def get_tx_outcome(client: NodeClient, tx_hash: bytes, timeout: float) -> dict[str, Any]:
    """Wait until the transaction is confirmed, settled or failed, at most ``timeout`` s.

    Returns the last status document; its status is "pending" if the node
    never reported an outcome in time (an unknown hash counts as pending).
    """
    deadline = time.monotonic() + timeout
    doc: dict[str, Any] = {"hash": tx_hash.hex(), "status": "pending"}
    while time.monotonic() < deadline:
        try:
            left = max(0.1, deadline - time.monotonic())
            doc = client.wait(tx_hash, "confirmed", min(10.0, left))
        except ClientError as exc:
            if exc.code != "unknown_tx":
                raise
            time.sleep(0.2)
            continue
        if doc.get("status") in ("confirmed", "settled", "failed"):
            return doc
        time.sleep(0.2)
    return doc


def get_outcome_problem(doc: dict[str, Any], timeout: float) -> tuple[str, str] | None:
    """Return None if ``doc`` (from :func:`get_tx_outcome`) is confirmed or settled.

    Otherwise ``("refused", chain reason)`` for a failed transaction, or
    ``("error", ...)`` when no outcome arrived within ``timeout`` seconds.
    """
    if doc.get("status") == "failed":
        return "refused", str(doc.get("reason", "transaction failed"))
    if doc.get("status") not in ("confirmed", "settled"):
        return "error", f"not confirmed within {timeout:.0f} s: {doc}"
    return None
