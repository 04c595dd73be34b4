"""Rules of the data access path (kinds 19-24): PRE keys, grants, cfrags, revocation."""

from __future__ import annotations

from dataclasses import dataclass

import umbral_pre
from ledger_helpers import USERS, VALIDATORS, Chain, make_genesis

from ledger import queries as q
from ledger.errors import ReceiptCode
from ledger.genesis import TOKEN
from ledger.records import ACCESS_DELIVERING, ACCESS_FAILED, ACCESS_GRANTED
from ledger.rules_data import SLASHED_RESULT
from ledger.tx import TxKind
from pre import keywrap


def _umbral_pk() -> bytes:
    return bytes(umbral_pre.SecretKey.random().public_key().to_compressed_bytes())


def test_register_pre_key_records_and_replaces() -> None:
    chain = Chain()
    user = USERS[3]
    assert q.get_pre_key(chain.state, user.pub) is None
    first = _umbral_pk()
    r = chain.run1(user, TxKind.REGISTER_PRE_KEY, [first, b""])
    assert r.ok, r.reason
    record = q.get_pre_key(chain.state, user.pub)
    assert record is not None and record.umbral_key == first and record.verifying_key == b""
    second, verifying = _umbral_pk(), _umbral_pk()
    assert chain.run1(user, TxKind.REGISTER_PRE_KEY, [second, verifying]).ok
    record = q.get_pre_key(chain.state, user.pub)
    assert record is not None and record.umbral_key == second
    assert record.verifying_key == verifying and record.height == chain.state.height


def test_register_pre_key_refuses_malformed_keys() -> None:
    chain = Chain()
    user = USERS[3]
    not_a_point = b"\x02" + b"\xff" * 32
    r = chain.run1(user, TxKind.REGISTER_PRE_KEY, [not_a_point, b""])
    assert r.code == ReceiptCode.BAD_PARAMETER and "umbral_key" in r.reason
    r = chain.run1(user, TxKind.REGISTER_PRE_KEY, [_umbral_pk(), b"\x03" * 5])
    assert r.code == ReceiptCode.BAD_PARAMETER and "verifying_key" in r.reason
    r = chain.run1(user, TxKind.REGISTER_PRE_KEY, [b"", b""])
    assert r.code == ReceiptCode.BAD_PARAMETER
    assert q.get_pre_key(chain.state, user.pub) is None


# -- grants, cfrags and revocation ----------------------------------------------


PROVIDER, CONSUMER, OTHER = USERS[2], USERS[3], USERS[4]
H32 = bytes(range(32))
ASSET_KEY = bytes(range(100, 132))


@dataclass
class Setup:
    chain: Chain
    asset_id: bytes
    request_id: bytes
    delegating_sk: umbral_pre.SecretKey
    signing_sk: umbral_pre.SecretKey
    consumer_sk: umbral_pre.SecretKey
    wrapped: keywrap.WrappedKey

    def grant_payload(self, m: int = 2, proxies: list[bytes] | None = None) -> list[object]:
        proxies = proxies if proxies is not None else [v.pub for v in VALIDATORS]
        sealed = keywrap.issue_kfrags(
            self.delegating_sk,
            umbral_pre.Signer(self.signing_sk),
            self.consumer_sk.public_key(),
            m,
            proxies,
        )
        return [self.request_id, m, proxies, [s.sealed for s in sealed], self.wrapped.to_bytes()]

    def cfrag(self, proxy_index: int, payload: list[object]) -> bytes:
        sealed = payload[3][proxy_index]  # type: ignore[index]
        return keywrap.process_reencryption(
            VALIDATORS[proxy_index].seed,
            sealed,
            self.wrapped.capsule,
            self.signing_sk.public_key(),
            self.delegating_sk.public_key(),
            self.consumer_sk.public_key(),
            self.request_id,
        )


def _setup(access_timeout: int = 50, consumer_key: bool = True) -> Setup:
    chain = Chain(genesis=make_genesis({"access_timeout": access_timeout}))
    r = chain.run1(
        PROVIDER,
        TxKind.REGISTER_ASSET,
        [H32, H32, 1_000_000, H32, ["images"], "CC-BY-4.0", 100 * TOKEN, b"commit-1"],
    )
    assert r.ok, r.reason
    asset_id = r.result
    delegating_sk, signing_sk = umbral_pre.SecretKey.random(), umbral_pre.SecretKey.random()
    consumer_sk = umbral_pre.SecretKey.random()
    pk = keywrap.compute_umbral_public_key_bytes
    reg = [pk(delegating_sk.public_key()), pk(signing_sk.public_key())]
    assert chain.run1(PROVIDER, TxKind.REGISTER_PRE_KEY, reg).ok
    if consumer_key:
        reg = [pk(consumer_sk.public_key()), b""]
        assert chain.run1(CONSUMER, TxKind.REGISTER_PRE_KEY, reg).ok
    req = chain.run1(CONSUMER, TxKind.REQUEST_ACCESS, [asset_id])
    assert req.ok, req.reason
    wrapped = keywrap.wrap_key(delegating_sk.public_key(), ASSET_KEY)
    return Setup(chain, asset_id, req.result, delegating_sk, signing_sk, consumer_sk, wrapped)


def test_grant_then_threshold_cfrags_settle_and_pay_exactly_the_price() -> None:
    s = _setup()
    provider_before = q.get_account(s.chain.state, PROVIDER.pub).balance
    access = q.get_access(s.chain.state, s.request_id)
    assert access is not None
    payload = s.grant_payload(m=2)
    r = s.chain.run1(PROVIDER, TxKind.GRANT_ACCESS, payload)
    assert r.ok, r.reason
    assert q.get_access(s.chain.state, s.request_id).status == ACCESS_DELIVERING
    grant = q.get_grant(s.chain.state, s.request_id)
    assert grant is not None and grant.threshold == 2 and grant.capsule == s.wrapped.capsule
    assert [g[0] for g in q.get_proxy_grants(s.chain.state, VALIDATORS[0].pub, 0)] == [
        s.request_id
    ]
    first = s.cfrag(0, payload)
    assert s.chain.run1(VALIDATORS[0], TxKind.PUBLISH_CFRAG, [s.request_id, first]).ok
    assert q.get_access(s.chain.state, s.request_id).status == ACCESS_DELIVERING
    dup = s.chain.run1(VALIDATORS[0], TxKind.PUBLISH_CFRAG, [s.request_id, first])
    assert dup.code == ReceiptCode.INVALID_STATE and "already published" in dup.reason
    second = s.cfrag(1, payload)
    assert s.chain.run1(VALIDATORS[1], TxKind.PUBLISH_CFRAG, [s.request_id, second]).ok
    settled = q.get_access(s.chain.state, s.request_id)
    assert settled.status == ACCESS_GRANTED
    paid = q.get_account(s.chain.state, PROVIDER.pub).balance - provider_before
    assert paid == access.price > 0
    cfrags = [c for _p, c in q.get_cfrags(s.chain.state, s.request_id)]
    key = keywrap.open_reencrypted_key(
        s.consumer_sk,
        s.wrapped,
        cfrags,
        2,
        s.signing_sk.public_key(),
        s.delegating_sk.public_key(),
        s.request_id,
        [v.pub for v in VALIDATORS],
    )
    assert key == ASSET_KEY


def test_grant_refusals() -> None:
    s = _setup()
    good = s.grant_payload(m=2)

    def code(sender: object, payload: list[object]) -> tuple[int, str]:
        r = s.chain.run1(sender, TxKind.GRANT_ACCESS, payload)  # type: ignore[arg-type]
        return r.code, r.reason

    assert code(CONSUMER, good)[0] == ReceiptCode.UNAUTHORIZED
    assert code(OTHER, good)[0] == ReceiptCode.UNAUTHORIZED
    c, reason = code(PROVIDER, [*good[:1], 0, *good[2:]])
    assert c == ReceiptCode.BAD_PARAMETER and "threshold" in reason
    c, reason = code(PROVIDER, [*good[:1], 3, *good[2:]])
    assert c == ReceiptCode.BAD_PARAMETER and "threshold" in reason
    twice = [VALIDATORS[0].pub, VALIDATORS[0].pub]
    c, reason = code(PROVIDER, [good[0], 1, twice, good[3], good[4]])
    assert c == ReceiptCode.BAD_PARAMETER and "distinct" in reason
    stranger = [VALIDATORS[0].pub, OTHER.pub]
    c, reason = code(PROVIDER, [good[0], 1, stranger, good[3], good[4]])
    assert c == ReceiptCode.BAD_PARAMETER and "not a validator" in reason
    c, reason = code(PROVIDER, [good[0], 1, good[2], good[3][:1], good[4]])  # type: ignore[index]
    assert c == ReceiptCode.BAD_PARAMETER and "kfrags" in reason
    c, reason = code(PROVIDER, [*good[:4], b"not a wrapped key"])
    assert c == ReceiptCode.BAD_PARAMETER and "wrapped key" in reason
    c, reason = code(PROVIDER, [H32, *good[1:]])
    assert c == ReceiptCode.NOT_FOUND
    assert code(PROVIDER, good)[0] == ReceiptCode.OK
    c, reason = code(PROVIDER, good)
    assert c == ReceiptCode.INVALID_STATE and "not pending" in reason


def test_grant_needs_consumer_key_and_live_asset_and_deadline() -> None:
    s = _setup(consumer_key=False)
    r = s.chain.run1(PROVIDER, TxKind.GRANT_ACCESS, s.grant_payload())
    assert r.code == ReceiptCode.INVALID_STATE and "consumer has registered no PRE key" in r.reason

    s = _setup()
    assert s.chain.run1(PROVIDER, TxKind.REVOKE_ASSET, [s.asset_id]).ok
    r = s.chain.run1(PROVIDER, TxKind.GRANT_ACCESS, s.grant_payload())
    assert r.code == ReceiptCode.INVALID_STATE and "revoked" in r.reason

    s = _setup(access_timeout=2)
    for _ in range(3):
        s.chain.run([])
    r = s.chain.run1(PROVIDER, TxKind.GRANT_ACCESS, s.grant_payload())
    assert r.code == ReceiptCode.INVALID_STATE and "deadline" in r.reason


def test_publish_refusals() -> None:
    s = _setup(access_timeout=8)
    payload = s.grant_payload(m=2)
    early = s.chain.run1(VALIDATORS[0], TxKind.PUBLISH_CFRAG, [s.request_id, s.cfrag(0, payload)])
    assert early.code == ReceiptCode.NOT_FOUND  # no grant yet
    assert s.chain.run1(PROVIDER, TxKind.GRANT_ACCESS, payload).ok
    cf0 = s.cfrag(0, payload)
    r = s.chain.run1(OTHER, TxKind.PUBLISH_CFRAG, [s.request_id, cf0])
    assert r.code == ReceiptCode.UNAUTHORIZED and "not a proxy" in r.reason
    r = s.chain.run1(VALIDATORS[1], TxKind.PUBLISH_CFRAG, [s.request_id, cf0])
    assert r.code == ReceiptCode.UNAUTHORIZED and "signed by another key" in r.reason
    r = s.chain.run1(VALIDATORS[0], TxKind.PUBLISH_CFRAG, [s.request_id, b"garbage"])
    assert r.code == ReceiptCode.BAD_PARAMETER
    fields = keywrap.get_signed_cfrag(cf0)
    wrong_context = keywrap.compute_signed_cfrag(
        VALIDATORS[0].seed,
        H32,
        fields["capsule"],
        fields["cfrag"],
        fields["verifying_pk"],
        fields["delegating_pk"],
        fields["receiving_pk"],
    )
    r = s.chain.run1(VALIDATORS[0], TxKind.PUBLISH_CFRAG, [s.request_id, wrong_context])
    assert r.code == ReceiptCode.BAD_PARAMETER and "context" in r.reason
    assert s.chain.run1(PROVIDER, TxKind.REVOKE_ASSET, [s.asset_id]).ok
    r = s.chain.run1(VALIDATORS[0], TxKind.PUBLISH_CFRAG, [s.request_id, cf0])
    assert r.code == ReceiptCode.INVALID_STATE and "revoked" in r.reason


def test_publish_after_deadline_refused_and_consumer_fail_refunds() -> None:
    s = _setup(access_timeout=4)
    payload = s.grant_payload(m=2)
    assert s.chain.run1(PROVIDER, TxKind.GRANT_ACCESS, payload).ok
    assert s.chain.run1(VALIDATORS[0], TxKind.PUBLISH_CFRAG, [s.request_id, s.cfrag(0, payload)]).ok
    before = q.get_account(s.chain.state, CONSUMER.pub).balance
    escrow = q.get_access(s.chain.state, s.request_id).escrow
    early = s.chain.run1(CONSUMER, TxKind.FAIL_ACCESS, [s.request_id])
    assert early.code == ReceiptCode.INVALID_STATE
    for _ in range(3):
        s.chain.run([])
    r = s.chain.run1(VALIDATORS[1], TxKind.PUBLISH_CFRAG, [s.request_id, s.cfrag(1, payload)])
    assert r.code == ReceiptCode.INVALID_STATE and "deadline" in r.reason
    assert s.chain.run1(PROVIDER, TxKind.SETTLE_ACCESS, [s.request_id]).code == (
        ReceiptCode.UNAUTHORIZED
    )
    assert s.chain.run1(CONSUMER, TxKind.FAIL_ACCESS, [s.request_id]).ok
    assert q.get_access(s.chain.state, s.request_id).status == ACCESS_FAILED
    assert q.get_account(s.chain.state, CONSUMER.pub).balance - before == escrow


def test_wrong_cfrag_slashes_the_proxy() -> None:
    s = _setup()
    payload = s.grant_payload(m=2)
    assert s.chain.run1(PROVIDER, TxKind.GRANT_ACCESS, payload).ok
    # A real capsule fragment, but of another capsule, signed as if for this grant.
    other = keywrap.wrap_key(s.delegating_sk.public_key(), b"another key")
    sealed = payload[3][0]  # type: ignore[index]
    kfrag = keywrap.open_kfrag(
        VALIDATORS[0].seed,
        sealed,
        s.signing_sk.public_key(),
        s.delegating_sk.public_key(),
        s.consumer_sk.public_key(),
    )
    wrong = umbral_pre.reencrypt(umbral_pre.Capsule.from_bytes(other.capsule), kfrag)
    pk = keywrap.compute_umbral_public_key_bytes
    bad = keywrap.compute_signed_cfrag(
        VALIDATORS[0].seed,
        s.request_id,
        s.wrapped.capsule,
        bytes(wrong),
        pk(s.signing_sk.public_key()),
        pk(s.delegating_sk.public_key()),
        pk(s.consumer_sk.public_key()),
    )
    assert keywrap.get_bad_cfrag_evidence_error(bad) is None  # it is evidence
    stake_before = q.get_validator(s.chain.state, VALIDATORS[0].pub).stake
    burned_before = q.get_supply(s.chain.state).burned
    r = s.chain.run1(VALIDATORS[0], TxKind.PUBLISH_CFRAG, [s.request_id, bad])
    assert r.ok and r.result == SLASHED_RESULT
    val = q.get_validator(s.chain.state, VALIDATORS[0].pub)
    params = s.chain.state.get_params()
    slash = stake_before * params.slash_bad_cfrag_ppm // 10**6
    assert val.jailed and stake_before - val.stake == slash > 0
    assert q.get_supply(s.chain.state).burned - burned_before == stake_before - val.stake
    grant = q.get_grant(s.chain.state, s.request_id)
    assert grant.slashed_proxies == [VALIDATORS[0].pub] and grant.cfrag_proxies == []
    again = s.chain.run1(VALIDATORS[0], TxKind.PUBLISH_CFRAG, [s.request_id, s.cfrag(0, payload)])
    assert again.code == ReceiptCode.INVALID_STATE
    assert q.get_access(s.chain.state, s.request_id).status == ACCESS_DELIVERING


def test_revoke_asset_rules() -> None:
    s = _setup()
    r = s.chain.run1(CONSUMER, TxKind.REVOKE_ASSET, [s.asset_id])
    assert r.code == ReceiptCode.UNAUTHORIZED
    assert s.chain.run1(PROVIDER, TxKind.REVOKE_ASSET, [H32]).code == ReceiptCode.NOT_FOUND
    assert s.chain.run1(PROVIDER, TxKind.REVOKE_ASSET, [s.asset_id]).ok
    assert q.is_asset_revoked(s.chain.state, s.asset_id)
    again = s.chain.run1(PROVIDER, TxKind.REVOKE_ASSET, [s.asset_id])
    assert again.code == ReceiptCode.INVALID_STATE
    new = s.chain.run1(OTHER, TxKind.REQUEST_ACCESS, [s.asset_id])
    assert new.code == ReceiptCode.INVALID_STATE and "not active" in new.reason
    # the pending request can still be refunded by the provider
    assert s.chain.run1(PROVIDER, TxKind.FAIL_ACCESS, [s.request_id]).ok


def test_provider_requests_index() -> None:
    s = _setup()
    rows = q.get_provider_requests(s.chain.state, PROVIDER.pub, 0)
    assert [row[0] for row in rows] == [s.request_id]
    assert q.get_provider_requests(s.chain.state, PROVIDER.pub, rows[0][1] + 1) == []
    assert q.get_provider_requests(s.chain.state, OTHER.pub, 0) == []
