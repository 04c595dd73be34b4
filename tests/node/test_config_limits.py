"""The empty-block interval limit: parsed, bounded, and tied to the PBFT timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from node import runtime
from node.config import MAX_EMPTY_BLOCK_INTERVAL_MS, ConfigError, Limits, parse_config


def _base() -> dict[str, object]:
    return {"name": "node00"}


def test_empty_block_interval_defaults_and_accepts_values_up_to_the_bound(tmp_path: Path) -> None:
    assert parse_config(_base(), tmp_path).limits.empty_block_interval_ms == 250
    assert Limits().empty_block_interval_ms <= MAX_EMPTY_BLOCK_INTERVAL_MS
    for good in (1, 100, MAX_EMPTY_BLOCK_INTERVAL_MS):
        cfg = parse_config({**_base(), "limits": {"empty_block_interval_ms": good}}, tmp_path)
        assert cfg.limits.empty_block_interval_ms == good


def test_empty_block_interval_past_half_the_progress_timeout_is_refused(tmp_path: Path) -> None:
    assert MAX_EMPTY_BLOCK_INTERVAL_MS * 2 <= runtime.PBFT_BASE_TIMEOUT_MS
    for bad in (MAX_EMPTY_BLOCK_INTERVAL_MS + 1, 0, -5, "250ms"):
        with pytest.raises(ConfigError, match=r"limits\.empty_block_interval_ms"):
            parse_config({**_base(), "limits": {"empty_block_interval_ms": bad}}, tmp_path)
