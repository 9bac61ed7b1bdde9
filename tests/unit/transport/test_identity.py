"""HeaderChecker with a fake servicer context: each check, in order, with its error."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from openfl_like.core.errors import (
    AuthError,
    PermissionDeniedError,
    PlanMismatchError,
    ProtocolError,
)
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore, RevocationChecker
from openfl_like.protocol import base_pb2
from openfl_like.transport.identity import HeaderChecker, check_reply_header


class FakeContext:
    def __init__(self, pem: bytes | None) -> None:
        self._pem = pem

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self._pem]} if self._pem else {}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> PkiStore:
    store = PkiStore(tmp_path_factory.mktemp("pki"))
    ca = CertificateAuthority.init(store)
    for name in ("col-a", "col-x"):
        ca.certify(name, Role.COLLABORATOR)
    ca.certify("env", Role.ENVOY)
    return store


def pem(store: PkiStore, name: str) -> bytes:
    return Path(store.cert_path(name)).read_bytes()


def checker(store: PkiStore, **kw) -> HeaderChecker:
    args = dict(server_name="agg", federation_uuid="fed", is_authorized=lambda n: n == "col-a",
                revocation=RevocationChecker(store.crl_path, store.signing_cert_path))  # fmt: skip
    args.update(kw)
    return HeaderChecker(**args)  # type: ignore[arg-type]


def header(sender="col-a", receiver="agg", fed="fed", single="") -> base_pb2.MessageHeader:
    return base_pb2.MessageHeader(sender=sender, receiver=receiver, federation_uuid=fed,
                                  single_col_cert_common_name=single)  # fmt: skip


def test_valid_call(store: PkiStore) -> None:
    assert checker(store).check(FakeContext(pem(store, "col-a")), header()) == "col-a"


@pytest.mark.parametrize(("cert", "hdr", "error", "match"), [
    (None, header(), AuthError, "no client certificate"),
    ("col-a", header(sender="col-x"), AuthError, "does not match"),
    ("env", header(sender="env"), PermissionDeniedError, "role envoy"),
    ("col-x", header(sender="col-x"), PermissionDeniedError, "not an authorised"),
    ("col-a", header(receiver="other"), PermissionDeniedError, "addressed to"),
    ("col-a", header(fed="other"), PlanMismatchError, "federation"),
    # order: a wrong sender is reported before a wrong receiver or federation
    ("col-a", header(sender="col-x", receiver="o", fed="o"), AuthError, "does not match"),
])  # fmt: skip
def test_refusals(store: PkiStore, cert, hdr, error, match) -> None:
    context = FakeContext(pem(store, cert) if cert else None)
    with pytest.raises(error, match=match):
        checker(store).check(context, hdr)


def test_certificate_outside_validity_is_refused_per_call(store: PkiStore) -> None:
    later = lambda: datetime.now(timezone.utc) + timedelta(days=3650)  # noqa: E731
    with pytest.raises(AuthError, match="validity"):
        checker(store, now=later).check(FakeContext(pem(store, "col-a")), header())


def test_single_certificate_mode(store: PkiStore) -> None:
    shared = checker(store, single_col_cert_common_name="col-a", is_authorized=lambda n: True)
    context = FakeContext(pem(store, "col-a"))
    assert shared.check(context, header(sender="col-x", single="col-a")) == "col-x"
    with pytest.raises(AuthError, match="single-certificate"):
        shared.check(context, header(sender="col-x"))


def test_without_tls_the_header_is_trusted(store: PkiStore) -> None:
    assert checker(store, tls=False).check(FakeContext(None), header()) == "col-a"


# -- client side: the reply's header ----------------------------------------------------------

REQUEST = base_pb2.MessageHeader(sender="col-a", receiver="agg", federation_uuid="fed-1")


def _reply(**changes: str) -> base_pb2.MessageHeader:
    fields = {"sender": "agg", "receiver": "col-a", "federation_uuid": "fed-1", **changes}
    return base_pb2.MessageHeader(**fields)


def test_reply_header_mirroring_the_request_is_accepted() -> None:
    check_reply_header(_reply(), REQUEST, "heartbeat")


@pytest.mark.parametrize(
    ("reply", "error", "match"),
    [
        (None, ProtocolError, "heartbeat: the aggregator's reply has no header"),
        (base_pb2.MessageHeader(), ProtocolError, "has no header"),
        (_reply(sender="agg-2"), AuthError, "comes from 'agg-2', not from the aggregator 'agg'"),
        (_reply(receiver="col-b"), AuthError, "addressed to 'col-b', not to us"),
        (_reply(federation_uuid="fed-2"), AuthError, "federation 'fed-2', not ours"),
    ],
)
def test_reply_header_mismatch_is_refused(reply, error, match) -> None:
    with pytest.raises(error, match=match):
        check_reply_header(reply, REQUEST, "heartbeat")


# -- the certificate part alone, then the header part -------------------------------------------


def test_check_peer_needs_only_the_context(store: PkiStore) -> None:
    from openfl_like.transport.identity import PeerIdentity

    peer = checker(store).check_peer(FakeContext(pem(store, "col-a")))
    assert peer.name == "col-a" and len(peer.fingerprint.split(":")) == 32
    assert checker(store, tls=False).check_peer(FakeContext(None)) == PeerIdentity()
    with pytest.raises(AuthError, match="no client certificate"):
        checker(store).check_peer(FakeContext(None))


def test_check_header_uses_the_peer_of_check_peer(store: PkiStore) -> None:
    hc = checker(store)
    context = FakeContext(pem(store, "col-a"))
    peer = hc.check_peer(context)
    assert hc.check_header(context, header(), peer) == "col-a"
    with pytest.raises(AuthError, match="does not match"):
        hc.check_header(context, header(sender="col-x"), peer)


def test_revoked_participants_are_the_seen_ones_the_crl_revokes(tmp_path: Path) -> None:
    # Prepare: a CA of our own (this test revokes); col-a and col-b call, col-c never does
    own = PkiStore(tmp_path / "pki")
    ca = CertificateAuthority.init(own)
    for name in ("col-a", "col-b", "col-c"):
        ca.certify(name, Role.COLLABORATOR)
    hc = checker(own, is_authorized=lambda n: True)
    for name in ("col-a", "col-b"):
        hc.check(FakeContext(pem(own, name)), header(sender=name))
    assert hc.revoked_participants() == frozenset()

    # Execute
    ca.revoke("col-a")
    ca.revoke("col-c")

    # Assert: only the seen one, at once; cached while nothing changes
    revoked = hc.revoked_participants()
    assert revoked == {"col-a"}
    assert hc.revoked_participants() is revoked
    # a revoked certificate refused at its first call is remembered too
    with pytest.raises(AuthError, match="revoked"):
        hc.check(FakeContext(pem(own, "col-c")), header(sender="col-c"))
    assert hc.revoked_participants() == {"col-a", "col-c"}


def test_revoked_participants_without_crl_or_tls(store: PkiStore) -> None:
    assert checker(store, revocation=None).revoked_participants() == frozenset()
