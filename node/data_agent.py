"""The provider agent: answers access requests to the provider's assets with grants.

``dmchain agent run --wallet W --node URL`` polls the node for requests to
the wallet's assets. For each pending request whose consumer registered an
Umbral key, on an asset the wallet published and that is not revoked, it
picks n proxies from the active validator set (deterministically: sorted by
``SHA-256(request id || validator key)``), issues one kfrag per proxy with
threshold m, seals each to its proxy and submits ``GRANT_ACCESS`` with the
wrapped key. The chain is the source of truth (a request that is no longer
pending is skipped), and the cursor lives in ``agent-state.json`` in the
wallet, so restarts are idempotent. Every request it does not grant is
logged with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import umbral_pre

from ledger.records import ACCESS_PENDING
from ledger.tx import TxKind
from node.client import ClientError, NodeClient
from node.data_client import DataError, TxSender, load_agent_state
from node.wallet import AGENT_STATE_FILE, Wallet, write_json_file
from pre import keywrap

DEFAULT_THRESHOLD = 3
DEFAULT_PROXIES = 4
MAX_REMEMBERED = 10_000
PAGE = 100


def compute_proxy_choice(request_id: bytes, validators: list[bytes], count: int) -> list[bytes]:
    """Return ``count`` validators ordered by ``SHA-256(request_id || key)`` (deterministic)."""
    ranked = sorted(validators, key=lambda key: hashlib.sha256(request_id + key).digest())
    return ranked[:count]


@dataclass
class ProviderAgent:
    """Grants access to the wallet's assets; one :meth:`process_poll` per interval."""

    client: NodeClient
    wallet: Wallet
    threshold: int = DEFAULT_THRESHOLD
    proxies: int = DEFAULT_PROXIES
    candidates: list[bytes] | None = None  # restrict proxies to these validators
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("dmchain.agent"))
    _sender: TxSender | None = None
    _refused: dict[str, str] = field(default_factory=dict)

    def _get_sender(self) -> TxSender:
        if self._sender is None:
            self._sender = TxSender(self.client, self.wallet.seed)
        return self._sender

    def _note_refusal(self, request_id: str, reason: str) -> None:
        if self._refused.get(request_id) != reason:
            self._refused[request_id] = reason
            self.log.info("event=grant_skipped request=%s reason=%s", request_id, reason)
            if len(self._refused) > MAX_REMEMBERED:
                self._refused.clear()

    def _grant(self, item: dict[str, Any], record: dict[str, Any], validators: list[bytes]) -> None:
        request_id = bytes.fromhex(item["request_id"])
        chosen = compute_proxy_choice(request_id, validators, self.proxies)
        m = min(self.threshold, len(chosen))
        receiving = umbral_pre.PublicKey.from_compressed_bytes(
            bytes.fromhex(item["consumer_pre_key"])
        )
        sealed = keywrap.issue_kfrags(
            self.wallet.get_umbral_secret_key(),
            umbral_pre.Signer(self.wallet.get_signing_secret_key()),
            receiving,
            m,
            chosen,
        )
        payload = [
            request_id,
            m,
            chosen,
            [s.sealed for s in sealed],
            bytes.fromhex(record["wrapped_key"]),
        ]
        self._get_sender().submit_and_wait(TxKind.GRANT_ACCESS, payload)
        self.log.info(
            "event=granted request=%s asset=%s m=%d n=%d",
            item["request_id"],
            item["asset_id"],
            m,
            len(chosen),
        )

    def process_poll(self) -> int:
        """Grant every grantable pending request; returns how many grants were submitted."""
        state = load_agent_state(self.wallet)
        cursor = int(state.get("cursor", 0))
        doc = self.client.get_provider_requests(self.wallet.public_key, cursor, PAGE)
        items: list[dict[str, Any]] = doc["requests"]
        height = int(doc["height"])
        validators: list[bytes] | None = None
        granted = 0
        waiting: list[int] = []
        for item in items:
            rid = item["request_id"]
            if item["status"] != ACCESS_PENDING:
                continue
            if height > int(item["deadline"]):
                self._note_refusal(rid, "the request deadline has passed")
                continue
            if item["asset_revoked"]:
                self._note_refusal(rid, "the asset is revoked")
                continue
            record = self.wallet.get_asset_record(bytes.fromhex(item["asset_id"]))
            if record is None:
                self._note_refusal(rid, "the asset was not published from this wallet")
                continue
            if not item["consumer_pre_key"]:
                self._note_refusal(rid, "the consumer has registered no Umbral key yet")
                waiting.append(int(item["height"]))
                continue
            if validators is None:
                active = [bytes.fromhex(v["public_key"]) for v in self.client.get_validators()]
                allowed = set(self.candidates) if self.candidates else set(active)
                validators = sorted(v for v in active if v in allowed)
            if len(validators) < self.threshold:
                self._note_refusal(
                    rid, f"only {len(validators)} eligible proxies, threshold {self.threshold}"
                )
                waiting.append(int(item["height"]))
                continue
            try:
                self._grant(item, record, validators)
                granted += 1
            except (DataError, keywrap.KeyWrapError, ValueError) as exc:
                self._note_refusal(rid, f"grant failed: {exc}")
                waiting.append(int(item["height"]))
        if waiting:
            cursor = min(waiting)
        elif items:
            last = max(int(i["height"]) for i in items)
            cursor = last if len(items) >= PAGE else last + 1
        if cursor != int(state.get("cursor", 0)):
            write_json_file(self.wallet.path / AGENT_STATE_FILE, {"cursor": cursor})
        return granted


def run_agent(agent: ProviderAgent, poll_s: float, max_polls: int | None = None) -> int:
    """Poll until SIGTERM/SIGINT (or ``max_polls``); node errors are logged, never fatal."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        agent.log.info("event=agent_stopping signal=%s", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    agent.log.info(
        "event=agent_started provider=%s m=%d n=%d",
        agent.wallet.public_key.hex(),
        agent.threshold,
        agent.proxies,
    )
    total = 0
    polls = 0
    while not stop.is_set():
        try:
            total += agent.process_poll()
        except (ClientError, DataError) as exc:
            agent.log.warning("event=agent_poll_failed error=%s", exc)
        polls += 1
        if max_polls is not None and polls >= max_polls:
            break
        stop.wait(poll_s)
    agent.log.info("event=agent_stopped grants=%d", total)
    return total
