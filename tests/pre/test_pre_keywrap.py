"""Umbral key wrap, m-of-n kfrags sealed to proxies, signed cfrags and bad-cfrag evidence."""

from __future__ import annotations

import io
import os

import pytest
import umbral_pre
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.codec import decode, encode
from consensus.crypto import compute_public_key, compute_seed_from_label
from pre.aead import decrypt_stream, encrypt_stream
from pre.keywrap import (
    InsufficientFragmentsError,
    KeyWrapError,
    WrappedKey,
    compute_signed_cfrag,
    get_bad_cfrag_evidence_error,
    get_cfrag_check,
    issue_kfrags,
    open_kfrag,
    open_reencrypted_key,
    process_reencryption,
    unwrap_key,
    wrap_key,
)

CONTEXT = b"grant-1"


class World:
    """A provider, a consumer and five proxies."""

    def __init__(self, threshold: int = 3, shares: int = 5) -> None:
        self.provider_sk = umbral_pre.SecretKey.random()
        self.provider_pk = self.provider_sk.public_key()
        self.signer = umbral_pre.Signer(umbral_pre.SecretKey.random())
        self.verifying_pk = self.signer.verifying_key()
        self.consumer_sk = umbral_pre.SecretKey.random()
        self.consumer_pk = self.consumer_sk.public_key()
        self.proxy_seeds = [compute_seed_from_label(f"proxy-{i}") for i in range(shares)]
        self.proxies = [compute_public_key(s) for s in self.proxy_seeds]
        self.threshold = threshold
        self.key = os.urandom(32)
        self.wrapped = wrap_key(self.provider_pk, self.key)
        self.kfrags = issue_kfrags(
            self.provider_sk, self.signer, self.consumer_pk, threshold, self.proxies
        )

    def reencrypt(self, i: int) -> bytes:
        return process_reencryption(
            self.proxy_seeds[i],
            self.kfrags[i].sealed,
            self.wrapped.capsule,
            self.verifying_pk,
            self.provider_pk,
            self.consumer_pk,
            CONTEXT,
        )

    def open(self, cfrags: list[bytes]) -> bytes:
        return open_reencrypted_key(
            self.consumer_sk,
            self.wrapped,
            cfrags,
            self.threshold,
            self.verifying_pk,
            self.provider_pk,
            CONTEXT,
            self.proxies,
        )

    def wrong_cfrag(self, i: int) -> bytes:
        """A cfrag proxy i signs but that belongs to another capsule."""
        other_capsule, _ = umbral_pre.encrypt(self.provider_pk, b"other")
        kfrag = open_kfrag(
            self.proxy_seeds[i],
            self.kfrags[i].sealed,
            self.verifying_pk,
            self.provider_pk,
            self.consumer_pk,
        )
        cfrag = umbral_pre.reencrypt(other_capsule, kfrag)
        return compute_signed_cfrag(
            self.proxy_seeds[i],
            CONTEXT,
            self.wrapped.capsule,
            bytes(cfrag),
            bytes(self.verifying_pk.to_compressed_bytes()),
            bytes(self.provider_pk.to_compressed_bytes()),
            bytes(self.consumer_pk.to_compressed_bytes()),
        )


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def test_end_to_end_1mib_three_of_five() -> None:
    w = World()
    plain = os.urandom(1024 * 1024)
    blob = io.BytesIO()
    sealed = encrypt_stream(w.key, b"\x00" * 8, io.BytesIO(plain), blob)
    assert unwrap_key(w.provider_sk, w.wrapped) == w.key
    cfrags = [w.reencrypt(i) for i in (4, 1, 2)]
    key = w.open(cfrags)
    out = io.BytesIO()
    opened = decrypt_stream(key, io.BytesIO(blob.getvalue()), out)
    assert out.getvalue() == plain
    assert opened.content_hash == sealed.content_hash


def test_fewer_than_m_fragments_refused(world: World) -> None:
    with pytest.raises(
        InsufficientFragmentsError, match="only 2 valid distinct capsule fragments, need 3"
    ):
        world.open([world.reencrypt(0), world.reencrypt(1)])


def test_duplicates_do_not_count(world: World) -> None:
    first = world.reencrypt(0)
    with pytest.raises(InsufficientFragmentsError, match="only 2 valid"):
        world.open([first, first, world.reencrypt(1)])


@pytest.mark.parametrize(("m", "n"), [(0, 5), (6, 5), (-1, 3), (1, 0)])
def test_threshold_out_of_range_refused(world: World, m: int, n: int) -> None:
    with pytest.raises(KeyWrapError, match="1 <= m <= n"):
        issue_kfrags(world.provider_sk, world.signer, world.consumer_pk, m, world.proxies[:n])


def test_duplicate_proxies_refused(world: World) -> None:
    with pytest.raises(KeyWrapError, match="distinct"):
        issue_kfrags(world.provider_sk, world.signer, world.consumer_pk, 1, [world.proxies[0]] * 2)


def test_kfrag_opens_only_for_its_proxy(world: World) -> None:
    with pytest.raises(KeyWrapError, match="not sealed to this proxy"):
        open_kfrag(
            world.proxy_seeds[1],
            world.kfrags[0].sealed,
            world.verifying_pk,
            world.provider_pk,
            world.consumer_pk,
        )


def test_kfrag_for_another_consumer_refused(world: World) -> None:
    stranger = umbral_pre.SecretKey.random().public_key()
    with pytest.raises(KeyWrapError, match="does not verify"):
        open_kfrag(
            world.proxy_seeds[0],
            world.kfrags[0].sealed,
            world.verifying_pk,
            world.provider_pk,
            stranger,
        )


def test_tampered_cfrag_detected_with_checkable_evidence(world: World) -> None:
    bad = world.wrong_cfrag(2)
    check = get_cfrag_check(
        [world.reencrypt(0), world.reencrypt(1), bad],
        world.wrapped.capsule,
        world.verifying_pk,
        world.provider_pk,
        world.consumer_pk,
        CONTEXT,
        world.proxies,
    )
    assert len(check.valid) == 2
    assert check.evidence == [bad]
    assert get_bad_cfrag_evidence_error(bad) is None
    decoded = decode(bad)
    assert decoded["proxy"] == world.proxies[2]
    with pytest.raises(InsufficientFragmentsError) as info:
        world.open([world.reencrypt(0), world.reencrypt(1), bad])
    assert info.value.evidence == (bad,)
    # a fourth honest proxy makes up for the bad one
    assert (
        world.open([world.reencrypt(0), bad, world.reencrypt(1), world.reencrypt(3)]) == world.key
    )


def test_honest_cfrag_is_not_evidence(world: World) -> None:
    reason = get_bad_cfrag_evidence_error(world.reencrypt(0))
    assert reason is not None and "verifies" in reason


def test_evidence_cannot_be_forged(world: World) -> None:
    bad = decode(world.wrong_cfrag(2))
    bad["proxy"] = world.proxies[3]  # blame another proxy
    assert "signature" in str(get_bad_cfrag_evidence_error(encode(bad)))
    honest = decode(world.reencrypt(0))
    honest["receiving_pk"] = bytes(umbral_pre.SecretKey.random().public_key().to_compressed_bytes())
    assert "signature" in str(get_bad_cfrag_evidence_error(encode(honest)))
    assert "does not decode" in str(get_bad_cfrag_evidence_error(b"\xff garbage"))


def test_garbage_cfrag_signed_by_proxy_is_evidence(world: World) -> None:
    garbage = compute_signed_cfrag(
        world.proxy_seeds[4],
        CONTEXT,
        world.wrapped.capsule,
        b"not a cfrag",
        bytes(world.verifying_pk.to_compressed_bytes()),
        bytes(world.provider_pk.to_compressed_bytes()),
        bytes(world.consumer_pk.to_compressed_bytes()),
    )
    assert get_bad_cfrag_evidence_error(garbage) is None


def test_cfrags_for_other_context_or_proxy_rejected(world: World) -> None:
    other_context = process_reencryption(
        world.proxy_seeds[0],
        world.kfrags[0].sealed,
        world.wrapped.capsule,
        world.verifying_pk,
        world.provider_pk,
        world.consumer_pk,
        b"grant-2",
    )
    check = get_cfrag_check(
        [other_context, world.reencrypt(1)],
        world.wrapped.capsule,
        world.verifying_pk,
        world.provider_pk,
        world.consumer_pk,
        CONTEXT,
        world.proxies[2:],
    )
    assert check.valid == [] and check.evidence == []
    assert "another capsule" in check.rejected[0]
    assert "not a custodian" in check.rejected[1]


def test_wrapped_key_encoding(world: World) -> None:
    assert WrappedKey.from_bytes(world.wrapped.to_bytes()) == world.wrapped
    with pytest.raises(KeyWrapError):
        WrappedKey.from_bytes(b"\x00")
    with pytest.raises(KeyWrapError, match="does not decrypt"):
        unwrap_key(umbral_pre.SecretKey.random(), world.wrapped)


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=200),
    st.binary(max_size=500),
    st.sampled_from(["capsule", "cfrag", "verifying_pk", "receiving_pk"]),
)
def test_evidence_check_never_raises(garbage: bytes, cfrag: bytes, field: str) -> None:
    parts = {
        "capsule": bytes(umbral_pre.encrypt(PK, b"k")[0]),
        "cfrag": cfrag,
        "verifying_pk": bytes(PK.to_compressed_bytes()),
        "receiving_pk": bytes(PK.to_compressed_bytes()),
    }
    parts[field] = garbage
    evidence = compute_signed_cfrag(
        SEED,
        CONTEXT,
        parts["capsule"],
        parts["cfrag"],
        parts["verifying_pk"],
        bytes(PK.to_compressed_bytes()),
        parts["receiving_pk"],
    )
    result = get_bad_cfrag_evidence_error(evidence)
    assert result is None or isinstance(result, str)
    assert isinstance(get_bad_cfrag_evidence_error(garbage), str)


SEED = compute_seed_from_label("fuzz-proxy")
PK = umbral_pre.SecretKey.random().public_key()
