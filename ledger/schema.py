"""The key schema: the one module that owns every key prefix in the store.

Keys are ``prefix byte || fixed-width fields``. Two families share the store:

* **state keys** (lower-case prefixes): accounts, validators, assets, access
  requests/grants, unbonding queues, evidence seen, KYC records, auditors,
  audit requests, the audit log and its subject index, and ``m``-meta records
  (parameters, supply, counters, governance and oracle sets). Every write to a
  state key is part of a block's write set and therefore of the state digest.
* **chain keys** (upper-case prefixes): blocks by height, height by block hash,
  receipts by transaction hash, certificates by height, and the head pointer.
  They are written beside the state in the same atomic batch but are not part
  of the state digest.
* **node records** (``N``): the node's consensus records (PBFT and PoS state
  machines' persisted votes and progress), kept in the same store so that
  they become durable in the same synced batches as the ledger. Never part
  of the state digest or of anything a block or query returns.

Heights and sequence numbers are 8-byte big-endian so prefix iteration is in
numeric order.
"""

from __future__ import annotations

ACCOUNT = b"a"
VALIDATOR = b"v"
ASSET = b"s"
ACCESS = b"r"
UNBONDING = b"u"
EVIDENCE = b"e"
KYC = b"k"
AUDITOR = b"d"
AUDIT_REQUEST = b"q"
AUDIT_LOG = b"l"
AUDIT_BY_SUBJECT = b"n"
META = b"m"
# -- data access --
PRE_KEY = b"p"
GRANT = b"g"
CFRAG = b"f"
PROXY_GRANT = b"x"
REVOKED = b"o"
PROVIDER_REQUEST = b"y"
# KYC audit
KYC_KFRAGS = b"z"
AUDIT_CFRAG = b"w"

STATE_PREFIXES: tuple[bytes, ...] = (
    ACCOUNT,
    VALIDATOR,
    ASSET,
    ACCESS,
    UNBONDING,
    EVIDENCE,
    KYC,
    AUDITOR,
    AUDIT_REQUEST,
    AUDIT_LOG,
    AUDIT_BY_SUBJECT,
    META,
    # -- data access --
    PRE_KEY,
    GRANT,
    CFRAG,
    PROXY_GRANT,
    REVOKED,
    PROVIDER_REQUEST,
    # KYC audit
    KYC_KFRAGS,
    AUDIT_CFRAG,
)

BLOCK = b"B"
BLOCK_HASH = b"H"
RECEIPT = b"R"
CERTIFICATE = b"C"
HEAD = b"Z"
NODE_RECORD = b"N"

PARAMS_KEY = META + b"params"
SUPPLY_KEY = META + b"supply"
CHAIN_KEY = META + b"chain"
GOVERNANCE_KEY = META + b"governance"
ORACLE_KEY = META + b"oracle"
AUDIT_SEQ_KEY = META + b"auditseq"
HEAD_KEY = HEAD + b"head"


def node_record_key(name: str) -> bytes:
    """Key of a consensus record of the node's own state machines (``pbft/...``, ``pos/...``)."""
    return NODE_RECORD + name.encode()


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def account_key(account: bytes) -> bytes:
    """Key of an account record (32-byte public key)."""
    return ACCOUNT + account


def validator_key(consensus_key: bytes) -> bytes:
    """Key of a validator record (32-byte consensus public key)."""
    return VALIDATOR + consensus_key


def asset_key(asset_id: bytes) -> bytes:
    """Key of a data asset record."""
    return ASSET + asset_id


def access_key(request_id: bytes) -> bytes:
    """Key of an access request (and, once settled, its grant)."""
    return ACCESS + request_id


def unbonding_key(height: int) -> bytes:
    """Key of the list of unbonding entries that mature at ``height``."""
    return UNBONDING + _u64(height)


def evidence_key(evidence_id: bytes) -> bytes:
    """Key marking an evidence id as already processed."""
    return EVIDENCE + evidence_id


def kyc_key(subject: bytes) -> bytes:
    """Key of a subject's KYC record."""
    return KYC + subject


def auditor_key(account: bytes) -> bytes:
    """Key marking ``account`` as a registered auditor."""
    return AUDITOR + account


def audit_request_key(request_id: bytes) -> bytes:
    """Key of an audit request."""
    return AUDIT_REQUEST + request_id


def audit_log_key(seq: int) -> bytes:
    """Key of audit log entry number ``seq``."""
    return AUDIT_LOG + _u64(seq)


def audit_subject_key(subject: bytes, seq: int) -> bytes:
    """Key of the subject index entry for audit log entry ``seq``."""
    return AUDIT_BY_SUBJECT + subject + _u64(seq)


# -- KYC audit ------------------------------------------------------------------


def kyc_kfrags_key(subject: bytes, auditor: bytes) -> bytes:
    """Key of the kfrag set of ``subject``'s credential for ``auditor``."""
    return KYC_KFRAGS + subject + auditor


def audit_cfrag_key(request_id: bytes, proxy: bytes, field: str) -> bytes:
    """Key of the cfrag ``proxy`` published for one field of one audit request."""
    return AUDIT_CFRAG + request_id + proxy + field.encode("utf-8")


def block_key(height: int) -> bytes:
    """Key of the encoded block at ``height``."""
    return BLOCK + _u64(height)


def block_hash_key(block_hash: bytes) -> bytes:
    """Key mapping a block hash to its height."""
    return BLOCK_HASH + block_hash


def receipt_key(tx_hash: bytes) -> bytes:
    """Key of the receipt of an accepted transaction."""
    return RECEIPT + tx_hash


def certificate_key(height: int) -> bytes:
    """Key of the (opaque) consensus certificate of the block at ``height``."""
    return CERTIFICATE + _u64(height)


# -- data access -------------------------------------------------


def pre_key_key(account: bytes) -> bytes:
    """Key of an account's registered Umbral public key (and verifying key)."""
    return PRE_KEY + account


def grant_key(request_id: bytes) -> bytes:
    """Key of the proxy re-encryption grant answering access request ``request_id``."""
    return GRANT + request_id


def cfrag_key(request_id: bytes, proxy: bytes) -> bytes:
    """Key of the valid signed cfrag ``proxy`` published for ``request_id``."""
    return CFRAG + request_id + proxy


def proxy_grant_key(proxy: bytes, height: int, request_id: bytes) -> bytes:
    """Index key: ``proxy`` is named in the grant of ``request_id`` made at ``height``."""
    return PROXY_GRANT + proxy + _u64(height) + request_id


def revoked_key(asset_id: bytes) -> bytes:
    """Key marking an asset as revoked by its provider (value: the height)."""
    return REVOKED + asset_id


def provider_request_key(provider: bytes, height: int, request_id: bytes) -> bytes:
    """Index key: an access request to one of ``provider``'s assets made at ``height``."""
    return PROVIDER_REQUEST + provider + _u64(height) + request_id


def is_state_key(key: bytes) -> bool:
    """Return True iff ``key`` belongs to the digested state."""
    return key[:1] in STATE_PREFIXES


# -- training jobs ---------------------------------------------------

EXECUTOR = b"t"
JOB = b"j"
EXECUTOR_JOB = b"i"  # index: executor || job id -> height, for each open assigned job
STATE_PREFIXES = (*STATE_PREFIXES, EXECUTOR, JOB, EXECUTOR_JOB)
if len(set(STATE_PREFIXES)) != len(STATE_PREFIXES):  # two features claimed one prefix
    raise RuntimeError(f"duplicate state key prefixes in {STATE_PREFIXES}")
EXECUTORS_KEY = META + b"executors"  # sorted list of registered executor accounts


def executor_key(account: bytes) -> bytes:
    """Key of an executor record (32-byte account key)."""
    return EXECUTOR + account


def job_key(job_id: bytes) -> bytes:
    """Key of a training job record (the job id is its SUBMIT_JOB tx hash)."""
    return JOB + job_id


def executor_job_key(account: bytes, job_id: bytes) -> bytes:
    """Key marking ``job_id`` as an open job assigned to executor ``account``."""
    return EXECUTOR_JOB + account + job_id


# -- training jobs: validation-data keys -------------------------------------

JOB_KEY = b"c"  # job id || executor -> the validation-data key sealed to that executor
STATE_PREFIXES = (*STATE_PREFIXES, JOB_KEY)
if len(set(STATE_PREFIXES)) != len(STATE_PREFIXES):  # two features claimed one prefix
    raise RuntimeError(f"duplicate state key prefixes in {STATE_PREFIXES}")


def job_sealed_key_key(job_id: bytes, executor: bytes) -> bytes:
    """Key of the validation-data key of ``job_id`` sealed to ``executor`` (JOB_KEYS)."""
    return JOB_KEY + job_id + executor
