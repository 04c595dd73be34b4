"""The benchmark's transaction mix, signed ahead of the measured window.

Accounts: one funded client account per target node (so that each account's
nonces reach one node in order) plus the consortium's governance keys for
the set-up. Set-up (warm-up, not measured): governance member 0 registers a
KYC subject and registers every client account as an auditor; each client
registers one data asset. The measured mix then repeats, per client, a cycle
of :data:`MIX_CYCLE`: 80 % transfers, 5 % asset registrations, 5 % access
requests (to the next client's asset), 5 % settlements of the client's own
latest request, 5 % audit requests (each one appends an on-chain audit log
entry). Every transaction of the mix is valid against the ledger rules, so a
failed receipt is a finding, not noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nacl.signing import SigningKey

from consensus.crypto import compute_hash, compute_public_key
from ledger.genesis import TOKEN
from ledger.rules import compute_governance_message
from ledger.tx import TxKind, compute_tx_body

KIND_TRANSFER = "transfer"
KIND_REGISTER = "register_asset"
KIND_REQUEST = "request_access"
KIND_SETTLE = "settle_access"
KIND_AUDIT = "audit_request"
_T = KIND_TRANSFER
MIX_CYCLE: tuple[str, ...] = (
    *(KIND_REQUEST, _T, _T, _T, _T, KIND_SETTLE, _T, _T, _T, _T),
    *(KIND_AUDIT, _T, _T, _T, _T, KIND_REGISTER, _T, _T, _T, _T),
)
ASSET_STAKE = 100 * TOKEN
ASSET_SIZE = 64 * 1024
MAX_PLANNED_TXS = 2_000_000


class WorkloadError(ValueError):
    """The workload cannot be built as asked (bad sizes, too few accounts)."""


class KeySigner:
    """One account with a cached signing key; signs canonical transactions."""

    def __init__(self, seed: bytes, chain_id: str, nonce: int = 0) -> None:
        self.key = SigningKey(seed)
        self.public_key = compute_public_key(seed)
        self.chain_id = chain_id
        self.nonce = nonce

    def sign(self, kind: TxKind, payload: list[object]) -> bytes:
        """Return a signed transaction with the next nonce (fee 0) and advance the nonce."""
        body = compute_tx_body(self.chain_id, kind, self.public_key, self.nonce, 0, payload)
        self.nonce += 1
        return body + self.key.sign(body).signature

    def sign_message(self, message: bytes) -> bytes:
        """Return the raw 64-byte signature of ``message``."""
        return self.key.sign(message).signature


@dataclass(frozen=True)
class PlannedTx:
    """A signed transaction and where and when it is to be sent."""

    node: int
    kind: str
    tx_hash: bytes
    hex: str


@dataclass
class ClientPlan:
    """The mix state of one client account: its cycle position and open request."""

    signer: KeySigner
    node: int
    peer_asset: bytes = b""
    peer_account: bytes = b""
    position: int = 0
    open_request: bytes = b""
    counter: int = 0
    assets: list[bytes] = field(default_factory=list)

    def compute_next(self, subject: bytes) -> tuple[str, bytes]:
        """Return (kind, raw) of this client's next transaction of the mix."""
        kind = MIX_CYCLE[self.position % len(MIX_CYCLE)]
        self.position += 1
        self.counter += 1
        tag = self.signer.public_key[:8] + self.counter.to_bytes(8, "big")
        if kind == KIND_SETTLE and not self.open_request:
            kind = KIND_TRANSFER
        if kind == KIND_REQUEST:
            raw = self.signer.sign(TxKind.REQUEST_ACCESS, [self.peer_asset])
            self.open_request = compute_hash(raw)
        elif kind == KIND_SETTLE:
            raw = self.signer.sign(TxKind.SETTLE_ACCESS, [self.open_request])
            self.open_request = b""
        elif kind == KIND_AUDIT:
            order = compute_hash(b"bench/order/" + tag)
            raw = self.signer.sign(TxKind.AUDIT_REQUEST, [subject, order, ["identity"], "bench"])
        elif kind == KIND_REGISTER:
            raw = compute_register_asset(self.signer, tag)
        else:
            raw = self.signer.sign(TxKind.TRANSFER, [self.peer_account, 1])
        return kind, raw


def compute_register_asset(signer: KeySigner, tag: bytes) -> bytes:
    """Return a signed registration of a 64 KiB asset with the minimum stake."""
    content = compute_hash(b"bench/content/" + tag)
    payload: list[object] = [
        content,
        compute_hash(b"bench/cipher/" + tag),
        ASSET_SIZE,
        compute_hash(b"bench/meta/" + tag),
        ["bench", "tabular"],
        "CC-BY-4.0",
        ASSET_STAKE,
        content,
    ]
    return signer.sign(TxKind.REGISTER_ASSET, payload)


@dataclass
class Workload:
    """Every account of the run and the transactions still to be planned."""

    chain_id: str
    clients: list[ClientPlan]
    governance: list[KeySigner]
    subject: bytes

    def compute_setup(self, governance_seq: int) -> list[tuple[int, str, bytes]]:
        """Return the set-up transactions as (node, kind, raw), in send order per account.

        Governance member 0 (sent to node 0): KYC registration of the audit
        subject, then one ``register_auditor`` per client with governance
        sequence numbers from ``governance_seq``, each signed by the first
        ``threshold`` governance keys. Every client: one asset registration.
        """
        gov = self.governance[0]
        out: list[tuple[int, str, bytes]] = []
        commitment = compute_hash(b"bench/kyc/commitment")
        raw = gov.sign(TxKind.KYC_REGISTER, [self.subject, commitment, b"bench-capsule"])
        out.append((0, "kyc_register", raw))
        for i, client in enumerate(self.clients):
            args: list[object] = [client.signer.public_key]
            seq = governance_seq + i
            message = compute_governance_message(self.chain_id, "register_auditor", args, seq)
            sigs = [[g.public_key, g.sign_message(message)] for g in self.governance]
            raw = gov.sign(TxKind.GOVERNANCE, ["register_auditor", args, seq, sigs])
            out.append((0, "register_auditor", raw))
        for client in self.clients:
            raw = compute_register_asset(client.signer, client.signer.public_key[:16])
            client.assets.append(compute_hash(raw))
            out.append((client.node, KIND_REGISTER, raw))
        for i, client in enumerate(self.clients):
            peer = self.clients[(i + 1) % len(self.clients)]
            client.peer_asset = peer.assets[0]
            client.peer_account = peer.signer.public_key
        return out

    def compute_batch(self, count: int, start_slot: int) -> list[PlannedTx]:
        """Return the next ``count`` transactions of the mix; slot j goes to client j mod K."""
        if not 0 <= count <= MAX_PLANNED_TXS:
            raise WorkloadError(f"at most {MAX_PLANNED_TXS} transactions per plan")
        out: list[PlannedTx] = []
        k = len(self.clients)
        for j in range(start_slot, start_slot + count):
            client = self.clients[j % k]
            kind, raw = client.compute_next(self.subject)
            out.append(PlannedTx(client.node, kind, compute_hash(raw), raw.hex()))
        return out


def build_workload(
    chain_id: str,
    client_seeds: list[bytes],
    governance_seeds: list[bytes],
    nodes: list[int],
    nonces: dict[bytes, int] | None = None,
) -> Workload:
    """Return a workload with one client account per target node in ``nodes``.

    ``nonces`` gives each account's next nonce (by public key) when attaching
    to a chain that has already seen these accounts; default 0.
    """
    if len(client_seeds) < len(nodes):
        raise WorkloadError(
            f"{len(nodes)} target nodes need {len(nodes)} funded client accounts, "
            f"the testnet has {len(client_seeds)}"
        )
    if len(nodes) < 2:
        raise WorkloadError("the mix needs at least two target nodes (two client accounts)")
    if not governance_seeds:
        raise WorkloadError("the set-up needs the testnet's governance keys")
    known = nonces or {}

    def signer(seed: bytes) -> KeySigner:
        return KeySigner(seed, chain_id, known.get(compute_public_key(seed), 0))

    pairs = zip(client_seeds, nodes, strict=False)
    clients = [ClientPlan(signer(seed), node) for seed, node in pairs]
    governance = [signer(seed) for seed in governance_seeds]
    subject = compute_public_key(compute_hash(b"bench/kyc-subject/" + chain_id.encode()))
    return Workload(chain_id, clients, governance, subject)
