"""Who is calling: the TLS peer certificate checked against the request header, per call.

Checks run in this order, before any payload is read, and the first failure wins. Part 1
(:meth:`HeaderChecker.check_peer`) needs only the grpc context, so it runs before a request is
even parsed, and before the first message of a client stream is awaited; parts 2-6
(:meth:`HeaderChecker.check_header`) need the request's header.

1. a peer certificate is present (UNAUTHENTICATED), not revoked by the store's CRL
   (UNAUTHENTICATED; the CRL is re-read when the file changes, so a revocation takes effect at
   the next call), inside its validity period (UNAUTHENTICATED; a long-lived connection outlives
   the handshake's check), and of the expected role (PERMISSION_DENIED): the checker's
   ``role``, or the role a method needs (the director serves envoys and experimenters on one
   port and passes each method's role to :meth:`HeaderChecker.check_peer`);
2. ``header.sender`` equals the certificate CN (UNAUTHENTICATED); in single-certificate
   simulation mode the CN and ``header.single_col_cert_common_name`` must both equal the
   configured shared name instead;
3. the sender is an authorised participant of the plan in that role (PERMISSION_DENIED);
   an ``operator`` is authorised by its certificate's role alone (it is in no plan, and calls
   only status and health);
4. ``header.receiver`` is this server (PERMISSION_DENIED);
5. ``header.federation_uuid`` is this federation (FAILED_PRECONDITION: a plan mismatch);
   except for the Handshake, which passes ``federation=False`` and calls
   :meth:`HeaderChecker.check_rest` (parts 5-6) only after the handler compared the plans'
   settings: the federation id is derived from them, so a collaborator with another plan is
   told which settings differ (``aggregator.rounds_to_train: 10 here, 5 at collaborator
   col1``), not two ids;
6. no other live process holds the sender's name (PERMISSION_DENIED; see ``instances``); not
   asked of operators, who only read and may watch from several terminals at once.

Each refusal carries a ``check`` attribute naming the check that failed (one of ``CHECKS``), so
a server's observer counts refusals by check without parsing messages.

Client side, :func:`check_reply_header` checks every reply the other way round: it comes from
the server we dialled, is addressed to us, and belongs to our federation.

Chain verification itself happens in the TLS handshake (``require_client_auth=True`` against
our CA bundle); grpc cannot load CRLs from Python, hence the per-call revocation check here.

The checker remembers the name of every certificate it has seen (passed, or refused as revoked)
by serial, so :meth:`HeaderChecker.revoked_participants` can tell the application which of them
the current CRL revokes, without waiting for their next call.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar

import grpc
from cryptography import x509

from openfl_like.core.errors import (
    AuthError,
    OpenflLikeError,
    PermissionDeniedError,
    PlanMismatchError,
    ProtocolError,
)
from openfl_like.core.ids import Role
from openfl_like.pki import RevocationChecker, participant_name, participant_role
from openfl_like.pki.identity import certificate_fingerprint
from openfl_like.protocol import base_pb2
from openfl_like.transport.instances import (
    INSTANCE_METADATA_KEY,
    LEAVING_METADATA_KEY,
    InstanceRegistry,
)

# Roles authorised by their certificate alone: read-only callers that no plan lists.
CERTIFICATE_ONLY_ROLES = frozenset({Role.OPERATOR})


def instance_of(context: grpc.ServicerContext) -> str:
    """The caller's process instance id from the call metadata ('' when absent)."""
    for key, value in context.invocation_metadata() or ():
        if key == INSTANCE_METADATA_KEY:
            return value if isinstance(value, str) else value.decode(errors="replace")
    return ""


def _leaving(context: grpc.ServicerContext) -> bool:
    return any(key == LEAVING_METADATA_KEY for key, _ in context.invocation_metadata() or ())


def peer_certificate_pem(context: grpc.ServicerContext) -> bytes | None:
    """The client's PEM certificate from the TLS auth context, or None (no TLS / no cert)."""
    values = context.auth_context().get("x509_pem_cert") or []
    return values[0] if values else None


@dataclass(frozen=True)
class _Peer:
    """A parsed peer certificate and what the checks read from it (fixed for a given PEM)."""

    cert: x509.Certificate
    not_before: datetime
    not_after: datetime
    name: str
    role: Role | None
    error: str  # why the name/role could not be read ('' when they could)
    fingerprint: str
    serial: int

    @classmethod
    def of(cls, cert: x509.Certificate) -> _Peer:
        try:
            name, role, error = participant_name(cert), participant_role(cert), ""
        except OpenflLikeError as exc:
            name, role, error = "", None, exc.message
        return cls(cert, cert.not_valid_before_utc, cert.not_valid_after_utc, name, role, error,
                   certificate_fingerprint(cert), cert.serial_number)

    @functools.cached_property
    def identities(self) -> dict[Role, PeerIdentity]:
        """The :class:`PeerIdentity` of this certificate for each role it passed as (made
        once: the same every call)."""
        return {}

    def identity(self, role: Role) -> PeerIdentity:
        identity = self.identities.get(role)
        if identity is None:
            identity = self.identities[role] = PeerIdentity(self.name, self.fingerprint, role)
        return identity


@dataclass(frozen=True)
class PeerIdentity:
    """Who the TLS layer says is calling: certificate CN, fingerprint ('' without TLS) and the
    role the certificate was checked for (None without TLS)."""

    name: str = ""
    fingerprint: str = ""
    role: Role | None = None


class _CertCache:
    """Parsed peer certificates by PEM: parsing (and reading the name, role and validity out
    of the extensions) costs more than all the checks together, and is the same every call."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._items: OrderedDict[bytes, _Peer] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, pem: bytes) -> _Peer:
        with self._lock:
            peer = self._items.get(pem)
            if peer is not None:
                self._items.move_to_end(pem)
                return peer
        try:
            peer = _Peer.of(x509.load_pem_x509_certificate(pem))
        except ValueError:
            raise _refusal(AuthError("peer certificate cannot be parsed"),
                           "bad_certificate") from None
        with self._lock:
            self._items[pem] = peer
            if len(self._items) > self._size:
                self._items.popitem(last=False)
        return peer


@dataclass
class HeaderChecker:
    """Applies the checks of the module docstring; returns the authenticated participant name.

    ``role`` is the certificate role every call needs unless a call names its own
    (``check_peer(context, role=...)``). ``is_authorized_as(name, role)``, when given, replaces
    ``is_authorized(name)`` and is asked with the role the call was checked for.
    """

    server_name: str
    federation_uuid: str
    is_authorized: Callable[[str], bool]
    revocation: RevocationChecker | None
    tls: bool = True
    role: Role = Role.COLLABORATOR
    is_authorized_as: Callable[[str, Role], bool] | None = None
    single_col_cert_common_name: str = ""
    instances: InstanceRegistry | None = None
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def __post_init__(self) -> None:
        self._certs = _CertCache()
        self._seen: dict[int, str] = {}  # serial -> CN of every certificate seen (docstring)
        self._seen_lock = threading.Lock()
        self._revoked_cache: tuple[object, int, frozenset[str]] | None = None

    def check(self, context: grpc.ServicerContext, header: base_pb2.MessageHeader) -> str:
        """Both parts: :meth:`check_peer`, then :meth:`check_header`."""
        return self.check_header(context, header, self.check_peer(context))

    def check_peer(
        self, context: grpc.ServicerContext, *, role: Role | None = None, rpc: str = ""
    ) -> PeerIdentity:
        """Part 1 (certificate, revocation, validity, role) from the grpc context alone.

        ``role``: the role this call needs (default: the checker's); ``rpc`` names the method
        in the refusal of a certificate of another role.
        """
        expected = role or self.role
        if not self.tls:
            return PeerIdentity()
        return self._check_certificate(context, expected, rpc).identity(expected)

    def check_header(
        self, context: grpc.ServicerContext, header: base_pb2.MessageHeader, peer: PeerIdentity,
        *, role: Role | None = None, federation: bool = True,
    ) -> str:
        """Parts 2-6 against the request's header, for a peer that passed :meth:`check_peer`.

        ``role``: the role the call needs, as given to :meth:`check_peer` (default: the one the
        certificate was checked for, else the checker's). ``federation=False`` leaves parts 5
        and 6 to a later :meth:`check_rest` (the Handshake: see the module docstring).
        """
        role = role or peer.role or self.role
        sender = header.sender
        if self.tls:
            common_name = peer.name
            if self.single_col_cert_common_name:
                shared = self.single_col_cert_common_name
                if common_name != shared or header.single_col_cert_common_name != shared:
                    raise _refusal(AuthError(
                        f"single-certificate mode: certificate {common_name!r} and header "
                        f"{header.single_col_cert_common_name!r} must both be {shared!r}"
                    ), "cn_mismatch")
            elif sender != common_name:
                raise _refusal(AuthError(
                    f"header sender {sender!r} does not match the certificate's name "
                    f"{common_name!r}"
                ), "cn_mismatch")
        if not sender:
            raise _refusal(AuthError("request header has no sender"), "no_sender")
        allowed = (
            (role in CERTIFICATE_ONLY_ROLES and self.tls)
            or (self.is_authorized_as(sender, role) if self.is_authorized_as is not None
                else self.is_authorized(sender))
        )
        if not allowed:
            raise _refusal(PermissionDeniedError(
                f"{sender!r} is not an authorised {role} of this plan"), "not_authorised")
        if header.receiver != self.server_name:
            raise _refusal(PermissionDeniedError(
                f"request is addressed to {header.receiver!r}, this is {self.server_name!r}"
            ), "wrong_receiver")
        if federation:
            self.check_rest(context, header, role=role)
        return sender

    def check_rest(self, context: grpc.ServicerContext, header: base_pb2.MessageHeader, *,
                   role: Role | None = None) -> None:
        """Parts 5-6, for a header that passed parts 2-4 (``check_header(federation=False)``):
        the federation id, then the claim on the sender's name (so a refused process never
        holds it; operators never claim one)."""
        self.check_federation(header)
        if self.instances is not None and (role or self.role) not in CERTIFICATE_ONLY_ROLES:
            instance = instance_of(context)
            self.instances.claim(header.sender, instance)
            if _leaving(context):
                self.instances.release(header.sender, instance)

    def check_federation(self, header: base_pb2.MessageHeader) -> None:
        """Part 5: the header's federation id is this server's (PlanMismatchError if not)."""
        if header.federation_uuid != self.federation_uuid:
            raise _refusal(PlanMismatchError(
                f"federation {header.federation_uuid!r} is not this server's "
                f"{self.federation_uuid!r}"
            ), "wrong_federation")

    @contextmanager
    def polling(self, context: grpc.ServicerContext, name: str) -> Iterator[None]:
        """A long-poll of ``name`` is parked: its instance counts as alive meanwhile."""
        instance = instance_of(context)
        if self.instances is not None:
            self.instances.poll(name, instance, +1)
        try:
            yield
        finally:
            if self.instances is not None:
                self.instances.poll(name, instance, -1)

    def still_waiting(self, context: grpc.ServicerContext, name: str) -> None:
        """A long-poll of ``name`` goes on: keep its instance marked alive."""
        if self.instances is not None:
            self.instances.touch(name, instance_of(context))

    def revoked_participants(self) -> frozenset[str]:
        """Names of the certificates seen so far that the current CRL revokes.

        Cheap when nothing changed (one ``stat`` of the CRL, then a cached answer). While the CRL
        is unusable (expired, rolled back, unreadable) every call is refused anyway; this then
        answers from the last usable CRL rather than declaring everyone revoked.
        """
        if self.revocation is None:
            return frozenset()
        serials = self.revocation.current_or_last_serials()
        seen = len(self._seen)
        cached = self._revoked_cache
        if cached is not None and cached[0] is serials and cached[1] == seen:
            return cached[2]
        with self._seen_lock:
            names = frozenset(name for serial, name in self._seen.items() if serial in serials)
        self._revoked_cache = (serials, seen, names)
        return names

    def _remember(self, peer: _Peer) -> None:
        serial = peer.serial
        if serial not in self._seen and peer.name:
            with self._seen_lock:
                self._seen[serial] = peer.name

    def _check_certificate(
        self, context: grpc.ServicerContext, role: Role, rpc: str
    ) -> _Peer:
        pem = peer_certificate_pem(context)
        if pem is None:
            raise _refusal(AuthError("no client certificate presented"), "no_certificate")
        peer = self._certs.load(pem)
        cert = peer.cert
        if self.revocation is not None:
            try:
                revoked = self.revocation.is_revoked(cert)
            except OpenflLikeError as exc:  # fail closed: an unreadable CRL lets nobody in
                raise _refusal(AuthError(f"cannot check revocation: {exc.message}"),
                               "crl_unusable") from None
            if revoked:
                self._remember(peer)
                raise _refusal(AuthError(f"certificate of {_cn_or_serial(cert)} is revoked"),
                               "revoked")
        moment = self.now()
        if not peer.not_before <= moment <= peer.not_after:
            raise _refusal(AuthError(
                f"certificate of {_cn_or_serial(cert)} is outside its validity period "
                f"({peer.not_before:%Y-%m-%d %H:%M} to {peer.not_after:%Y-%m-%d %H:%M} UTC)"
            ), "expired")
        if peer.error:
            raise _refusal(AuthError(f"peer certificate: {peer.error}"), "bad_certificate")
        if peer.role != role:
            if rpc:
                raise _refusal(PermissionDeniedError(
                    f"certificate of {peer.name!r} has role {peer.role}: {rpc} is for {role} "
                    f"certificates only"
                ), "role")
            raise _refusal(PermissionDeniedError(
                f"certificate of {peer.name!r} has role {peer.role}, not {role}"
            ), "role")
        self._remember(peer)
        return peer


_E = TypeVar("_E", bound=OpenflLikeError)

# The ``check`` names a refusal carries (what metrics count refusals by: a fixed set).
CHECKS: tuple[str, ...] = (
    "no_certificate", "bad_certificate", "crl_unusable", "revoked", "expired", "role",
    "cn_mismatch", "no_sender", "not_authorised", "wrong_receiver", "wrong_federation",
)


def _refusal(error: _E, check: str) -> _E:
    """``error`` with the name of the check that refused the call (module docstring)."""
    error.check = check  # type: ignore[attr-defined]
    return error


def _cn_or_serial(cert: x509.Certificate) -> str:
    try:
        return repr(participant_name(cert))
    except OpenflLikeError:
        return f"serial {cert.serial_number:x}"


def check_reply_header(
    header: base_pb2.MessageHeader | None, expected: base_pb2.MessageHeader, what: str,
    *, server: str = "aggregator",
) -> None:
    """Raise unless a reply's header mirrors our request's ``expected`` header.

    The reply must come from the ``server`` (aggregator, director: for messages) we addressed
    (``expected.receiver``), be addressed to us (``expected.sender``) and carry our federation
    id: a reply from another server or
    federation (a misrouted address, a proxy, a stale server on a reused port) is refused.
    """
    if header is None or not header.sender:
        raise ProtocolError(f"{what}: the {server}'s reply has no header")
    if header.sender != expected.receiver:
        raise AuthError(
            f"{what}: the reply comes from {header.sender!r}, not from the {server} "
            f"{expected.receiver!r} we addressed"
        )
    if header.receiver != expected.sender:
        raise AuthError(
            f"{what}: the reply is addressed to {header.receiver!r}, not to us "
            f"({expected.sender!r})"
        )
    if header.federation_uuid != expected.federation_uuid:
        raise AuthError(
            f"{what}: the reply belongs to federation {header.federation_uuid!r}, not ours "
            f"({expected.federation_uuid!r})"
        )
