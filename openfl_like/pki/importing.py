"""`fx pki import`: put what the CA sent back into a participant's store, after checking it.

The CSR flow ends with two files coming back from the CA host: the signed certificate and the CA
bundle (optionally the CRL and the signing CA certificate, which a server needs to check
revocation). Before anything is written, the certificate must

- name a participant whose private key is in this store (``private/<name>.key``, made here by
  ``fx pki csr``) and carry that key's public half: a certificate for another key is useless;
- chain to the given bundle and pass every named check of ``verify`` (role, key usage, EKU,
  validity; revocation when a CRL comes with it).

Then the files are written atomically, creating ``certs/`` and ``ca/``; a different CA bundle
already in the store is replaced only with ``force`` (and never in a CA store: its bundle is its
own CA's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from openfl_like.core.errors import PkiError, VerificationError
from openfl_like.core.fsutil import atomic_write
from openfl_like.core.ids import Role, check_name
from openfl_like.pki import keys
from openfl_like.pki.identity import (
    certificate_fingerprint,
    participant_name,
    public_key_fingerprint,
)
from openfl_like.pki.pem import certificate_pem, load_certificate, parse_certificate, read_file
from openfl_like.pki.revocation import crl_number, crl_pem, load_crl
from openfl_like.pki.store import PkiStore
from openfl_like.pki.trust import Trust, split_bundle
from openfl_like.pki.verify import verify_with_trust


@dataclass(frozen=True)
class ImportedCertificate:
    """What ``import_certificate`` wrote."""

    name: str
    role: Role
    cert_path: Path
    ca_bundle_path: Path
    crl_path: Path | None
    signing_cert_path: Path | None
    fingerprint_sha256: str
    not_after: datetime
    bundle_replaced: bool  # a different CA bundle was there (with force)


def _check_own_key(store: PkiStore, name: str, cert: x509.Certificate) -> None:
    key_path = store.key_path(name)
    if not key_path.is_file():
        raise PkiError(
            f"no private key of {name!r} in {store.private_dir}: import the certificate on the "
            f"host (and into the --pki-dir) where `fx pki csr --name {name}` made its key"
        )
    key = keys.load_private_key(key_path)
    mine = public_key_fingerprint(key.public_key())
    theirs = public_key_fingerprint(cert.public_key())
    if mine != theirs:
        raise PkiError(
            f"the certificate of {name!r} was issued for another key than {key_path} (key "
            f"SHA-256 {theirs[:23]}..., this key {mine[:23]}...): sign this host's CSR"
        )


def _check_not_older(store: PkiStore, crl: x509.CertificateRevocationList,
                     signing: x509.Certificate, *, force: bool) -> None:
    """An imported CRL must not roll back the one here (it could un-revoke a certificate)."""
    if force or not store.crl_path.is_file():
        return
    try:
        current = load_crl(store.crl_path, signing)
    except PkiError:
        return  # another CA's or unreadable: replaced along with the bundle
    if crl_number(crl) < crl_number(current):
        raise PkiError(f"the CRL given is older (number {crl_number(crl)}) than the one in "
                       f"{store.crl_path} (number {crl_number(current)}); --force replaces it")


def _same_bundle(path: Path, root: x509.Certificate, signing: x509.Certificate) -> bool:
    try:
        old_root, old_signing = split_bundle(path.read_bytes(), path)
    except (OSError, PkiError):
        return False
    return (old_root, old_signing) == (root, signing)


def import_certificate(
    store: PkiStore, *, cert_file: Path, ca_bundle_file: Path, crl_file: Path | None = None,
    signing_cert_file: Path | None = None, expected_name: str | None = None,
    force: bool = False, now: datetime | None = None,
) -> ImportedCertificate:
    """Check, then write the certificate, the CA bundle and the optional CRL / signing CA."""
    cert = parse_certificate(read_file(cert_file, "certificate"), f"certificate {cert_file}")
    try:
        name = participant_name(cert)
    except VerificationError as exc:
        raise PkiError(f"{cert_file}: {exc.message}") from None
    if expected_name is not None and check_name(expected_name) != name:
        raise PkiError(f"{cert_file} is the certificate of {name!r}, not of {expected_name!r}")
    root, signing = split_bundle(read_file(ca_bundle_file, "CA bundle"), ca_bundle_file)
    if signing_cert_file is not None:
        given = load_certificate(signing_cert_file, "signing CA certificate")
        if given != signing:
            raise PkiError(f"{signing_cert_file} is not the signing CA of {ca_bundle_file}")
    crl = load_crl(crl_file, signing) if crl_file is not None else None
    if crl is not None:
        _check_not_older(store, crl, signing, force=force)
    _check_own_key(store, name, cert)
    try:
        _, role = verify_with_trust(cert, Trust(root, signing, crl, "import", ca_bundle_file),
                                    now=now)
    except VerificationError as exc:
        raise VerificationError(exc.check, f"{cert_file} failed the {exc.check} check against "
                                f"{ca_bundle_file}: {exc.message.split(': ', 1)[-1]}") from None
    bundle_path = store.ca_bundle_path
    replaced = bundle_path.exists() and not _same_bundle(bundle_path, root, signing)
    if replaced and store.kind() == "ca":
        raise PkiError(f"{store.root} is the CA's own store and its CA bundle differs from "
                       f"{ca_bundle_file}: import into a participant's --pki-dir")
    if replaced and not force:
        raise PkiError(f"a different CA bundle is in {bundle_path}; --force replaces it (the "
                       "certificates issued by the old CA then no longer verify here)")
    # Trust first, the certificate last: an interrupted import leaves no certificate that
    # the store cannot verify.
    atomic_write(bundle_path, certificate_pem(signing) + certificate_pem(root))
    written_crl = None
    written_signing = None
    own_ca = store.kind() == "ca"  # the CA's own CRL and signing certificate stay as they are
    if crl is not None and not own_ca:
        written_crl = store.crl_path
        atomic_write(written_crl, crl_pem(crl))
    if (signing_cert_file is not None or crl is not None) and not own_ca:
        # servers check the CRL with it
        written_signing = store.signing_cert_path
        atomic_write(written_signing, certificate_pem(signing))
    atomic_write(store.cert_path(name), certificate_pem(cert))
    return ImportedCertificate(
        name=name, role=role, cert_path=store.cert_path(name), ca_bundle_path=bundle_path,
        crl_path=written_crl, signing_cert_path=written_signing,
        fingerprint_sha256=certificate_fingerprint(cert), not_after=cert.not_valid_after_utc,
        bundle_replaced=replaced,
    )
