"""Node keys: generation, 0600 storage, loading, and clear errors."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import umbral_pre
from libp2p.peer.id import ID

from consensus.crypto import compute_public_key, compute_signature, is_valid_signature
from node.keys import (
    ACCOUNT_FILE,
    IDENTITY_FILE,
    UMBRAL_FILE,
    KeyFileError,
    NodeKeys,
    compute_identity_key_pair,
    compute_peer_id,
    generate_node_keys,
    get_keys_dir,
    is_node_keys_present,
    load_node_keys,
    save_node_keys,
)


def test_generate_save_load_round_trip(tmp_path: Path) -> None:
    keys = generate_node_keys()
    assert not is_node_keys_present(tmp_path)
    save_node_keys(tmp_path, keys)
    assert is_node_keys_present(tmp_path)
    loaded = load_node_keys(tmp_path)
    assert loaded == keys
    assert stat.S_IMODE(get_keys_dir(tmp_path).stat().st_mode) == 0o700
    for name in (ACCOUNT_FILE, IDENTITY_FILE, UMBRAL_FILE):
        assert stat.S_IMODE((get_keys_dir(tmp_path) / name).stat().st_mode) == 0o600


def test_fresh_keys_differ() -> None:
    a, b = generate_node_keys(), generate_node_keys()
    assert a.account_seed != b.account_seed
    assert a.identity_seed != b.identity_seed
    assert a.umbral_secret != b.umbral_secret
    assert a.get_peer_id() != b.get_peer_id()


def test_derived_public_values() -> None:
    keys = generate_node_keys()
    public = keys.get_account_public_key()
    assert public == compute_public_key(keys.account_seed)
    assert is_valid_signature(public, b"m", compute_signature(keys.account_seed, b"m"))
    peer_id = keys.get_peer_id()
    assert peer_id == compute_peer_id(keys.identity_seed)
    assert peer_id == ID.from_pubkey(keys.get_identity_key_pair().public_key).to_base58()
    assert ID.from_base58(peer_id).to_base58() == peer_id
    umbral_hex = keys.get_umbral_public_key_hex()
    assert len(bytes.fromhex(umbral_hex)) == 33
    expected = umbral_pre.SecretKey.from_be_bytes(keys.umbral_secret).public_key()
    assert umbral_hex == bytes(expected.to_compressed_bytes()).hex()
    assert keys.account_seed.hex() not in repr(keys)


def test_peer_id_is_stable_for_a_seed() -> None:
    seed = bytes(range(32))
    assert compute_peer_id(seed) == compute_peer_id(bytes(range(32)))
    assert compute_peer_id(seed) != compute_peer_id(bytes(range(1, 33)))
    assert compute_identity_key_pair(seed).public_key.to_bytes() == compute_public_key(seed)


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    first = generate_node_keys()
    save_node_keys(tmp_path, first)
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        save_node_keys(tmp_path, generate_node_keys())
    assert load_node_keys(tmp_path) == first
    second = generate_node_keys()
    save_node_keys(tmp_path, second, overwrite=True)
    assert load_node_keys(tmp_path) == second


def test_missing_file(tmp_path: Path) -> None:
    save_node_keys(tmp_path, generate_node_keys())
    (get_keys_dir(tmp_path) / IDENTITY_FILE).unlink()
    with pytest.raises(KeyFileError, match=r"identity\.key: key file is missing"):
        load_node_keys(tmp_path)
    with pytest.raises(KeyFileError, match="missing"):
        load_node_keys(tmp_path / "elsewhere")


def test_loose_permissions_are_refused(tmp_path: Path) -> None:
    save_node_keys(tmp_path, generate_node_keys())
    path = get_keys_dir(tmp_path) / ACCOUNT_FILE
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="0644 are too open"):
        load_node_keys(tmp_path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (ACCOUNT_FILE, b"not hex at all\n"),
        (ACCOUNT_FILE, b"abcd\n"),
        (IDENTITY_FILE, b"00" * 33 + b"\n"),
        (UMBRAL_FILE, b"00" * 32 + b"\n"),  # zero is not a valid secp256k1 scalar
        (UMBRAL_FILE, b"\xff\xfe binary"),
        (ACCOUNT_FILE, b"0" * 5000),
    ],
)
def test_corrupt_files(tmp_path: Path, name: str, content: bytes) -> None:
    save_node_keys(tmp_path, generate_node_keys())
    path = get_keys_dir(tmp_path) / name
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError, match=name.replace(".", r"\.")):
        load_node_keys(tmp_path)


def test_directory_in_place_of_a_file(tmp_path: Path) -> None:
    save_node_keys(tmp_path, generate_node_keys())
    path = get_keys_dir(tmp_path) / UMBRAL_FILE
    path.unlink()
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_node_keys(tmp_path)


def test_wrong_sizes_rejected_in_memory() -> None:
    with pytest.raises(KeyFileError):
        NodeKeys(account_seed=b"x" * 31, identity_seed=b"y" * 32, umbral_secret=b"z" * 32)
    with pytest.raises(KeyFileError):
        compute_peer_id(b"short")
