"""The certificate revocation list: built by the CA, checked by servers on every call.

``RevocationChecker`` is cheap per call: one ``stat`` of the CRL file; it re-reads and re-verifies
the CRL only when the file's mtime or size changed, so a ``fx pki revoke`` takes effect at the
next request without restarting a server. It fails closed: a missing, corrupt, forged, expired
(past nextUpdate) or rolled-back (lower CRL number) CRL raises ``PkiError`` instead of letting
everyone in. ``fx pki crl refresh`` re-signs the same list with a higher number and a new
nextUpdate.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from openfl_like.core.errors import PkiError
from openfl_like.core.logging import get_logger
from openfl_like.pki import keys, profiles
from openfl_like.pki.pem import load_certificate, read_file

_log = get_logger(__name__)


@dataclass(frozen=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags | None = None


def build_crl(
    issuer_cert: x509.Certificate, issuer_key: keys.PrivateKey,
    entries: Iterable[RevokedEntry], *, number: int, now: datetime | None = None,
    validity: timedelta = profiles.CRL_VALIDITY,
) -> x509.CertificateRevocationList:
    """A CRL signed by the signing CA, with CRLNumber and AuthorityKeyIdentifier (RFC 5280).

    Servers refuse it after ``now + validity`` (its nextUpdate): re-sign before then.
    """
    moment = now or datetime.now(timezone.utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(moment)
        .next_update(moment + validity)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for entry in entries:
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        if entry.reason is not None:
            revoked = revoked.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(issuer_key, keys.SIGNATURE_HASH())


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def load_crl(crl_path: Path, issuer_cert: x509.Certificate) -> x509.CertificateRevocationList:
    """Read the CRL and prove it was signed by ``issuer_cert``."""
    data = read_file(crl_path, "CRL")
    try:
        crl = x509.load_pem_x509_crl(data)
    except ValueError:
        raise PkiError(f"corrupt CRL: {crl_path}") from None
    if crl.issuer != issuer_cert.subject or not crl.is_signature_valid(issuer_cert.public_key()):
        raise PkiError(f"CRL {crl_path} is not signed by the signing CA")
    return crl


def crl_entries(crl: x509.CertificateRevocationList) -> list[RevokedEntry]:
    entries = []
    for revoked in crl:
        try:
            reason: x509.ReasonFlags | None = revoked.extensions.get_extension_for_class(
                x509.CRLReason
            ).value.reason
        except x509.ExtensionNotFound:
            reason = None
        entries.append(RevokedEntry(revoked.serial_number, revoked.revocation_date_utc, reason))
    return entries


def crl_number(crl: x509.CertificateRevocationList) -> int:
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


@dataclass(frozen=True)
class _Loaded:
    """What one version of the CRL file gave: its revocations, or why it is unusable."""

    stamp: tuple[int, int, int]
    serials: frozenset[int] = frozenset()
    number: int = 0
    next_update: datetime | None = None
    problem: str = ""  # '' when the CRL was accepted


class RevocationChecker:
    """``is_revoked(cert)`` against the store's CRL; reloads when the CRL file changes.

    Refuses (``PkiError``, so servers refuse every caller) a CRL that is missing, corrupt, not
    signed by the signing CA, past its nextUpdate, or numbered below one this checker has
    accepted before (a rollback to an older list would un-revoke certificates). Each change of
    that verdict is logged once, not once per call.
    """

    def __init__(
        self, crl_path: Path, signing_cert_path: Path, *,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._crl_path = Path(crl_path)
        self._issuer = load_certificate(Path(signing_cert_path), "signing CA certificate")
        self._now = now
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._highest = -1  # highest CRL number accepted so far
        self._last_serials: frozenset[int] = frozenset()  # of the last accepted CRL
        self._reported = ""  # the problem last logged ('' = fine)
        self._serials()  # fail at start, not at the first call

    def _serials(self) -> frozenset[int]:
        """The current CRL's revoked serials; PkiError when the CRL is unusable."""
        try:
            info = os.stat(self._crl_path)
        except OSError as exc:
            problem = f"CRL unavailable: {self._crl_path}: {exc.strerror}"
            self._report(problem)
            raise PkiError(problem) from None
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        loaded = self._loaded  # unchanged file (every call but the first after a change): no lock
        if loaded is None or loaded.stamp != stamp:
            with self._lock:
                loaded = self._loaded
                if loaded is None or loaded.stamp != stamp:
                    loaded = self._loaded = self._load(stamp)
        problem = loaded.problem
        if not problem and loaded.next_update is not None and self._now() > loaded.next_update:
            problem = (
                f"CRL {self._crl_path} expired on {loaded.next_update:%Y-%m-%d %H:%M} UTC "
                "(run `fx pki crl refresh` on the CA host)"
            )
        self._report(problem)
        if problem:
            raise PkiError(problem)
        return loaded.serials

    def _load(self, stamp: tuple[int, int, int]) -> _Loaded:
        try:
            crl = load_crl(self._crl_path, self._issuer)
        except PkiError as exc:
            return _Loaded(stamp, problem=exc.message)
        number = crl_number(crl)
        if number < self._highest:
            return _Loaded(stamp, problem=(
                f"CRL {self._crl_path} has number {number}, lower than {self._highest} seen "
                "before: an older list (rollback) is refused"
            ))
        if crl.next_update_utc is None:
            return _Loaded(stamp, problem=f"CRL {self._crl_path} has no nextUpdate")
        self._highest = number
        serials = frozenset(r.serial_number for r in crl)
        if serials != self._last_serials:
            self._last_serials = serials
        return _Loaded(stamp, self._last_serials, number, crl.next_update_utc)

    def _report(self, problem: str) -> None:
        if problem == self._reported:
            return
        with self._lock:
            if problem == self._reported:
                return
            previous, self._reported = self._reported, problem
        if problem:
            _log.error("revocation list unusable, refusing every caller: %s", problem)
        elif previous:
            _log.warning("revocation list usable again (%s)", self._crl_path)

    @property
    def revoked_serials(self) -> frozenset[int]:
        return self._serials()

    def current_or_last_serials(self) -> frozenset[int]:
        """The current CRL's serials, or the last accepted CRL's while it is unusable.

        The same object is returned while the revocations do not change, so callers can cache
        what they derive from it by identity.
        """
        try:
            return self._serials()
        except PkiError:
            return self._last_serials

    def is_revoked(self, cert: x509.Certificate) -> bool:
        return cert.serial_number in self._serials()
