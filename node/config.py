"""Node configuration: one JSON file per node home directory.

``config.json`` in a node's home directory says who the node is and where it
listens; the consortium (members, keys, roles, parameters) comes from the
genesis file it names. Every bad field is reported with its name and what was
expected, so an operator can fix it without reading the code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
# Half the PBFT progress timeout (node/runtime.py PBFT_BASE_TIMEOUT_MS).
MAX_EMPTY_BLOCK_INTERVAL_MS = 1_000


class ConfigError(ValueError):
    """A node configuration that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Limits:
    """Bounds the node enforces on everything it buffers."""

    max_tx_bytes: int = 8 * 1024
    mempool_max_txs: int = 200_000
    mempool_max_bytes: int = 128 * 1024 * 1024
    mempool_max_per_sender: int = 10_000
    batch_max_txs: int = 1_000
    batch_interval_ms: int = 10
    empty_block_interval_ms: int = 250
    block_max_batches: int = 64
    max_frame_bytes: int = 4 * 1024 * 1024
    peer_queue_frames: int = 20_000
    http_max_body_bytes: int = 1024 * 1024
    blob_max_bytes: int = 256 * 1024 * 1024
    blob_store_max_bytes: int = 8 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class NodeConfig:
    """What one node needs to start. Paths are relative to ``home`` unless absolute."""

    name: str
    home: Path
    listen_host: str = "127.0.0.1"
    p2p_port: int = 26600
    http_host: str = "127.0.0.1"
    http_port: int = 26700
    genesis_file: str = "genesis.json"
    data_dir: str = "data"
    log_level: str = "info"
    limits: Limits = field(default_factory=Limits)

    @property
    def genesis_path(self) -> Path:
        """Absolute path of the genesis file."""
        return (self.home / self.genesis_file).resolve()

    @property
    def data_path(self) -> Path:
        """Absolute path of the data directory (LevelDB, blobs, signing log)."""
        return (self.home / self.data_dir).resolve()

    @property
    def http_url(self) -> str:
        """Base URL of the node's HTTP API."""
        return f"http://{self.http_host}:{self.http_port}"

    def to_json(self) -> dict[str, Any]:
        """Return the JSON object written to ``config.json`` (home is implied)."""
        data = asdict(self)
        data.pop("home")
        return data


_HOW_TO_CREATE = "create it with 'dmchain init' or 'dmchain testnet'"
_LEVELS = ("debug", "info", "warning", "error")


def _get_port(raw: dict[str, Any], key: str, default: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise ConfigError(f"config field '{key}' must be a port number 1..65535, got {value!r}")
    return value


def _get_str(raw: dict[str, Any], key: str, default: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config field '{key}' must be a non-empty string, got {value!r}")
    return value


def _get_limits(raw: Any) -> Limits:
    if raw is None:
        return Limits()
    if not isinstance(raw, dict):
        raise ConfigError("config field 'limits' must be an object")
    defaults = asdict(Limits())
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ConfigError(f"unknown field(s) in 'limits': {', '.join(unknown)}")
    values = dict(defaults)
    for key, value in raw.items():
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"limits.{key} must be a positive integer, got {value!r}")
        values[key] = value
    if values["empty_block_interval_ms"] > MAX_EMPTY_BLOCK_INTERVAL_MS:
        raise ConfigError(
            f"limits.empty_block_interval_ms must be at most {MAX_EMPTY_BLOCK_INTERVAL_MS} "
            "(half the PBFT progress timeout, so replicas never suspect an idle leader), "
            f"got {values['empty_block_interval_ms']}"
        )
    if values["blob_store_max_bytes"] < values["blob_max_bytes"]:
        raise ConfigError(
            "limits.blob_store_max_bytes must be at least limits.blob_max_bytes "
            f"({values['blob_max_bytes']}), got {values['blob_store_max_bytes']}"
        )
    return Limits(**values)


def parse_config(raw: Any, home: Path) -> NodeConfig:
    """Return a validated config from the parsed JSON ``raw``; raises ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a JSON object")
    known = {f for f in NodeConfig.__dataclass_fields__ if f != "home"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    level = _get_str(raw, "log_level", "info")
    if level not in _LEVELS:
        raise ConfigError(f"config field 'log_level' must be one of {', '.join(_LEVELS)}")
    config = NodeConfig(
        name=_get_str(raw, "name", ""),
        home=home.resolve(),
        listen_host=_get_str(raw, "listen_host", "127.0.0.1"),
        p2p_port=_get_port(raw, "p2p_port", 26600),
        http_host=_get_str(raw, "http_host", "127.0.0.1"),
        http_port=_get_port(raw, "http_port", 26700),
        genesis_file=_get_str(raw, "genesis_file", "genesis.json"),
        data_dir=_get_str(raw, "data_dir", "data"),
        log_level=level,
        limits=_get_limits(raw.get("limits")),
    )
    if config.p2p_port == config.http_port and config.listen_host == config.http_host:
        raise ConfigError("p2p_port and http_port must differ")
    return config


def load_config(home: Path) -> NodeConfig:
    """Read ``home/config.json``; raises ConfigError with a clear message on any problem."""
    path = home / CONFIG_FILE
    if not home.is_dir():
        raise ConfigError(f"node home {home} does not exist ({_HOW_TO_CREATE})")
    if not path.is_file():
        raise ConfigError(f"{path} not found ({_HOW_TO_CREATE})")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        return parse_config(raw, home)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def write_config(config: NodeConfig) -> Path:
    """Write ``config.json`` into the config's home directory and return its path."""
    config.home.mkdir(parents=True, exist_ok=True)
    path = config.home / CONFIG_FILE
    path.write_text(json.dumps(config.to_json(), indent=2, sort_keys=True) + "\n")
    return path
