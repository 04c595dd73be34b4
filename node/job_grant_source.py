"""Executor datasets through the data access grant path (``node.data_client``).

The executor acts as a consumer: for each dataset of a job it requests access
(``REQUEST_ACCESS``, registering its Umbral key first if needed), the
provider's agent grants it to m of n proxies, the proxies publish capsule
fragments on chain (which settles the request and pays the provider), and
the executor recovers the data key, downloads the ciphertext from the nodes'
blob endpoints, decrypts it and checks it against the on-chain content hash
(:func:`node.data_client.fetch_asset`). The access price is the executor's
cost of a job; its fee is what covers it.

A fetched dataset is kept in the cache directory (re-hashed before reuse),
so an executor pays for each asset once, not once per job. An open request
is reused (from the wallet's request records) until it is delivered or
fails, so a slow grant never makes the executor pay twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from consensus.crypto import compute_hash
from node import data_client as dc
from node.client import ClientError, NodeClient
from node.jobdata import JobDataError
from node.wallet import Wallet

FAILED_STATUSES = ("failed", "disputed")


class GrantPathSource:
    """A :class:`node.jobdata.DatasetSource` that fetches through access grants."""

    def __init__(
        self,
        client: NodeClient,
        wallet: Wallet,
        blob_urls: Sequence[str],
        cache_dir: Path,
        timeout: float = 300.0,
    ) -> None:
        self.client = client
        self.wallet = wallet
        self.blob_urls = list(blob_urls)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.sender = dc.TxSender(client, wallet.seed)

    def _cached(self, asset_id: bytes, content_hash: bytes) -> bytes | None:
        path = self.cache_dir / f"{asset_id.hex()}.data"
        if not path.is_file():
            return None
        data = path.read_bytes()
        if compute_hash(data) != content_hash:
            path.unlink(missing_ok=True)
            return None
        return data

    def _open_request(self, asset_id: bytes) -> bytes:
        request_id = self.wallet.find_request_for_asset(asset_id)
        if request_id is not None:
            doc = self.client.get_access(request_id)
            if doc is not None and doc.get("status_name") not in FAILED_STATUSES:
                return request_id
        return dc.request_access(self.sender, self.wallet, asset_id, self.timeout)

    def get_dataset(self, asset_id: bytes, asset: dict[str, Any]) -> bytes:
        """Return the asset's plaintext, fetched through a grant (see module doc)."""
        content_hash = bytes.fromhex(asset["content_hash"])
        cached = self._cached(asset_id, content_hash)
        if cached is not None:
            return cached
        out = self.cache_dir / f"{asset_id.hex()}.data"
        try:
            request_id = self._open_request(asset_id)
            dc.fetch_asset(
                self.client, self.wallet, request_id, out,
                blob_urls=self.blob_urls, timeout=self.timeout,
            )
        except (dc.DataError, ClientError) as exc:
            raise JobDataError(f"asset {asset_id.hex()}: {exc}") from exc
        data = self._cached(asset_id, content_hash)
        if data is None:
            raise JobDataError(f"asset {asset_id.hex()}: fetched data fails its content hash")
        return data
