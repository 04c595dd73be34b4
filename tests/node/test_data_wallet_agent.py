"""Wallets (0600 secrets, no symmetric key on disk) and the agent's proxy choice."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from node.data_agent import compute_proxy_choice
from node.wallet import WalletError, load_wallet, process_create_wallet


def test_wallet_roundtrip_and_permissions(tmp_path: Path) -> None:
    seed = bytes(range(32))
    wallet = process_create_wallet(tmp_path / "w", seed)
    assert wallet.seed == seed
    for name in ("account.key", "umbral.key", "signing.key"):
        assert stat.S_IMODE((tmp_path / "w" / name).stat().st_mode) == 0o600
    loaded = load_wallet(tmp_path / "w")
    assert loaded.public_key == wallet.public_key
    assert loaded.get_umbral_public_key_bytes() == wallet.get_umbral_public_key_bytes()
    assert len(loaded.get_verifying_key_bytes()) == 33
    with pytest.raises(WalletError, match="already holds a wallet"):
        process_create_wallet(tmp_path / "w")
    (tmp_path / "w" / "umbral.key").chmod(0o644)
    with pytest.raises(WalletError, match="too open"):
        load_wallet(tmp_path / "w")
    with pytest.raises(WalletError, match="does not exist"):
        load_wallet(tmp_path / "missing")


def test_proxy_choice_is_deterministic_and_varies_by_request() -> None:
    validators = [bytes([i]) * 32 for i in range(7)]
    first = compute_proxy_choice(b"r1" * 16, validators, 4)
    assert first == compute_proxy_choice(b"r1" * 16, list(reversed(validators)), 4)
    assert len(set(first)) == 4 and set(first) <= set(validators)
    choices = {tuple(compute_proxy_choice(bytes([i]) * 32, validators, 4)) for i in range(20)}
    assert len(choices) > 1
    assert sorted(compute_proxy_choice(b"x" * 32, validators[:2], 4)) == validators[:2]
