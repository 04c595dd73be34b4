"""Client of the KYC_Audit routes (see :mod:`node.kyc_api`), on top of :class:`NodeClient`."""

from __future__ import annotations

from typing import Any

from node.client import NodeClient


class KycClient(NodeClient):
    """A node client with the KYC_Audit, audit status and subject event queries."""

    def kyc_audit(self, raw: bytes) -> bytes:
        """Submit a signed AUDIT_REQUEST through KYC_Audit; returns the request id.

        Raises ClientError with the node's refusal code and reason.
        """
        doc = self._request("POST", "/v1/kyc_audit", json={"tx": raw.hex()})
        return bytes.fromhex(doc["request_id"])

    def get_audit(self, request_id: bytes, fields: list[str] | None = None) -> dict[str, Any]:
        """Return the audit request document (releasable now for ``fields`` or why not)."""
        params = {"fields": ",".join(fields)} if fields else None
        return dict(self._request("GET", f"/v1/audits/{request_id.hex()}", params=params))

    def get_kyc(self, subject: bytes) -> dict[str, Any]:
        """Return the subject's KYC record document (sealed credential as hex)."""
        return dict(self._request("GET", f"/v1/kyc/{subject.hex()}"))

    def get_kyc_events(self, subject: bytes, limit: int = 1000) -> list[dict[str, Any]]:
        """Return the audit log entries about ``subject``, oldest first."""
        doc = self._request("GET", f"/v1/kyc/{subject.hex()}/events", params={"limit": limit})
        return list(doc["events"])

    def get_kfrag_set(self, subject: bytes, auditor: bytes) -> dict[str, Any]:
        """Return the subject's kfrag set for ``auditor``."""
        return dict(self._request("GET", f"/v1/kyc/{subject.hex()}/kfrags/{auditor.hex()}"))

    def get_auditors(self) -> list[bytes]:
        """Return the registered auditors."""
        return [bytes.fromhex(a) for a in self._request("GET", "/v1/auditors")["auditors"]]

    def get_audit_log(self, start: int, limit: int = 500) -> list[dict[str, Any]]:
        """Return audit log entries from sequence number ``start`` (at most ``limit``)."""
        doc = self._request("GET", "/v1/audit_log", params={"start": start, "limit": limit})
        return list(doc["entries"])

    def get_governance(self) -> dict[str, Any]:
        """Return the governance key set: threshold, keys and the next action sequence."""
        return dict(self._request("GET", "/v1/governance"))
