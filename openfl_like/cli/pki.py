"""`fx pki`: the certificate commands, a thin shell over ``openfl_like.pki``.

Imports only click, cryptography and the pki/core packages (never grpc or TensorFlow), so every
command starts and finishes well under a second.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

from openfl_like.core.errors import ConfigError, PkiError, VerificationError
from openfl_like.core.ids import Role, check_name
from openfl_like.pki.authority import CertificateAuthority, IssuedCertificate
from openfl_like.pki.csr import inspect_csr, write_csr
from openfl_like.pki.identity import certificate_fingerprint
from openfl_like.pki.keys import KEY_TYPES
from openfl_like.pki.pem import load_certificate, read_file
from openfl_like.pki.profiles import CRL_VALIDITY, san_text
from openfl_like.pki.revocation import crl_number
from openfl_like.pki.store import DEFAULT_PKI_DIR, PKI_DIR_ENV, PkiStore
from openfl_like.pki.trust import Trust, load_trust
from openfl_like.pki.verify import verify_with_trust

CRL_DAYS = CRL_VALIDITY.days
PASSPHRASE_ENV = "FX_CA_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret
ROLES = "|".join(r.value for r in Role)
F = TypeVar("F", bound=Callable[..., Any])


def pki_dir_option(func: F) -> F:
    """--pki-dir on every command; the store is passed on as ``store``."""

    @click.option(
        "--pki-dir", "pki_dir", type=click.Path(path_type=Path, file_okay=False),
        default=DEFAULT_PKI_DIR, envvar=PKI_DIR_ENV, show_default=True,
        help=f"Certificate store folder (the {PKI_DIR_ENV} environment variable overrides the "
        "default).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, pki_dir: Path, **kwargs: Any) -> Any:
        return func(*args, store=PkiStore(pki_dir), **kwargs)

    return wrapper  # type: ignore[return-value]


def passphrase_option(func: F) -> F:
    """--passphrase-file for commands that use the CA keys; FX_CA_PASSPHRASE as fallback."""

    @click.option(
        "--passphrase-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
        help=f"File holding the CA key passphrase (first line). Without it, the "
        f"{PASSPHRASE_ENV} environment variable is used when set; else the CA keys are "
        "unencrypted.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, passphrase_file: Path | None, **kwargs: Any) -> Any:
        return func(*args, passphrase=_read_passphrase(passphrase_file), **kwargs)

    return wrapper  # type: ignore[return-value]


def _read_passphrase(path: Path | None) -> bytes | None:
    if path is not None:
        text = read_file(path, "passphrase file").decode("utf-8", "replace")
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise ConfigError(f"passphrase file {path} is empty")
        return lines[0].encode()
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def _role(value: str) -> Role:
    return Role.parse(value.strip().lower())


def _show_issued(issued: IssuedCertificate) -> None:
    click.echo(f"issued {issued.role.value} certificate for {issued.name!r}")
    click.echo(f"  certificate  {issued.cert_path}")
    if issued.key_path is not None:
        click.echo(f"  private key  {issued.key_path} (mode 0600)")
    click.echo(f"  serial       {issued.serial:X}")
    click.echo(f"  SHA-256      {issued.fingerprint_sha256}")
    click.echo(f"  SANs         {', '.join(issued.sans) or '-'}")
    click.echo(f"  expires      {issued.not_after:%Y-%m-%d %H:%M} UTC")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def pki() -> None:
    """Certificates for mutual TLS: a two-tier CA, CSRs, signing, verification and a CRL.

    \b
    Single host:   fx pki init; fx pki certify --name agg --role aggregator
    CSR flow:      (participant) fx pki csr --name col1 --role collaborator
                   (CA host)     fx pki sign col1.csr
                   (participant) fx pki import --cert col1.crt --ca-bundle ca-bundle.pem
    """


@pki.command()
@pki_dir_option
@passphrase_option
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ec", show_default=True,
              help="ec = ECDSA P-384, rsa = RSA 3072 (both sign with SHA-384).")
@click.option("--force", is_flag=True, help="Replace an existing CA (invalidates every cert).")
def init(store: PkiStore, passphrase: bytes | None, key_type: str, force: bool) -> None:
    """Create a two-tier CA: a root CA that signs only the signing CA.

    The CA keys are encrypted when a passphrase is given (--passphrase-file or
    FX_CA_PASSPHRASE); later certify/sign/revoke calls then need the same passphrase.
    """
    ca = CertificateAuthority.init(store, key_type=key_type, passphrase=passphrase, force=force)
    click.echo(f"initialised a two-tier CA in {store.root}")
    click.echo(f"  root CA      {store.root_cert_path}  ({ca.root_cert.subject.rfc4514_string()})")
    click.echo(f"  signing CA   {store.signing_cert_path}")
    click.echo(f"  CA bundle    {store.ca_bundle_path}")
    click.echo(f"  CRL          {store.crl_path}")
    click.echo(f"  CA keys      {'encrypted' if passphrase else 'unencrypted'}, mode 0600")


@pki.command()
@pki_dir_option
@passphrase_option
@click.option("--name", required=True, help="Participant name (becomes CN and file name).")
@click.option("--role", "role_name", required=True, metavar=ROLES, help="Participant role.")
@click.option("--san", "sans", multiple=True, metavar="HOST_OR_IP",
              help="Server roles: a host name or IP address (repeatable; default localhost, "
              "127.0.0.1 and this host's name). Ignored for client roles.")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ec", show_default=True,
              help="Key algorithm: ec (ECDSA P-384) or rsa (RSA 3072).")
@click.option("--force", is_flag=True, help="Replace an existing key/cert (the old cert is "
              "revoked).")
def certify(
    store: PkiStore, passphrase: bytes | None, name: str, role_name: str,
    sans: tuple[str, ...], key_type: str, force: bool,
) -> None:
    """Make a key and a CA-signed certificate in one step."""
    check_name(name)
    role = _role(role_name)
    ca = CertificateAuthority.load(store, passphrase=passphrase)
    if sans and not role.is_server:
        click.echo(f"note: --san is ignored for the client role {role.value}", err=True)
    _show_issued(ca.certify(name, role, list(sans) or None, force=force, key_type=key_type))


@pki.command()
@pki_dir_option
@click.option("--name", required=True, help="Participant name (becomes CN and file name).")
@click.option("--role", "role_name", required=True, metavar=ROLES, help="Participant role.")
@click.option("--san", "sans", multiple=True, metavar="HOST_OR_IP",
              help="Server roles: hosts to request (default localhost, 127.0.0.1, host name).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Write NAME.key and NAME.csr here (default: the store's private/ and "
              "requests/ folders).")
@click.option("--key-type", type=click.Choice(KEY_TYPES), default="ec", show_default=True,
              help="Key algorithm: ec (ECDSA P-384) or rsa (RSA 3072).")
@click.option("--force", is_flag=True, help="Replace an existing key/CSR.")
def csr(
    store: PkiStore, name: str, role_name: str, sans: tuple[str, ...], out_dir: Path | None,
    key_type: str, force: bool,
) -> None:
    """On the participant's host: make a private key and a CSR. The key never leaves."""
    check_name(name)
    role = _role(role_name)
    if out_dir is None:
        files = write_csr(store.root, name, role, list(sans) or None, key_type=key_type,
                          force=force, key_path=store.key_path(name),
                          csr_path=store.csr_path(name))
    else:
        files = write_csr(out_dir, name, role, list(sans) or None, key_type=key_type,
                          force=force)
    click.echo(f"wrote a {role.value} CSR for {name!r}")
    click.echo(f"  CSR          {files.csr_path}   (send this to the CA)")
    click.echo(f"  private key  {files.key_path}   (mode 0600; keep it here)")
    click.echo(f"  key SHA-256  {files.public_key_fingerprint}")
    click.echo(f"next, on the CA host: fx pki sign {files.csr_path.name}")


@pki.command()
@pki_dir_option
@passphrase_option
@click.argument("csr_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--yes", "-y", is_flag=True, help="Sign without asking for confirmation.")
@click.option("--name", "expected_name", default=None, help="Refuse unless the CSR asks for "
              "this name.")
@click.option("--role", "expected_role", default=None, metavar=ROLES,
              help="Refuse unless the CSR asks for this role.")
@click.option("--force", is_flag=True, help="Replace an existing certificate of that name.")
def sign(
    store: PkiStore, passphrase: bytes | None, csr_file: Path, yes: bool,
    expected_name: str | None, expected_role: str | None, force: bool,
) -> None:
    """On the CA host: check a CSR and issue its certificate.

    Checks the CSR signature, the name pattern and the role (subject OU), shows subject, SANs
    and the key fingerprint, and asks for confirmation unless --yes. The extensions come from the
    role, never from the CSR.
    """
    if expected_name is not None:
        check_name(expected_name)
    role = _role(expected_role) if expected_role is not None else None
    data = read_file(csr_file, "CSR file")
    ca = CertificateAuthority.load(store, passphrase=passphrase)
    request = inspect_csr(data, expected_name=expected_name, expected_role=role)
    cert_path = store.cert_path(request.name)
    if cert_path.exists() and not force:
        raise PkiError(f"{request.name!r} exists already ({cert_path}); use --force to replace it")
    planned = ca.planned_sans(request)
    click.echo(f"CSR {csr_file}")
    click.echo(f"  subject      {request.subject_text}")
    click.echo(f"  name / role  {request.name} / {request.role.value}")
    click.echo(f"  SANs         {', '.join(san_text(g) for g in planned) or '-'}")
    click.echo(f"  key SHA-256  {request.public_key_fingerprint}")
    if not yes:
        click.confirm("sign this request?", default=False, abort=True, err=True)
    _show_issued(ca.sign_csr(data, expected_name=request.name, expected_role=request.role,
                             force=force))


@pki.command()
@pki_dir_option
@click.argument("cert", metavar="CERT")
@click.option("--role", "expected_role", default=None, metavar=ROLES,
              help="Also require this role.")
def verify(store: PkiStore, cert: str, expected_role: str | None) -> None:
    """Verify CERT (a file, or the name of a certificate in the store).

    Checks the chain to our root, the validity window, role, key usage/EKU for the role and
    revocation; on failure, names the check that failed.
    """
    role = _role(expected_role) if expected_role is not None else None
    trust = load_trust(store)
    path = Path(cert)
    if not path.exists() and "/" not in cert and not cert.endswith((".crt", ".pem")):
        path = store.cert_path(cert)
    certificate = load_certificate(path)
    try:
        name, actual = verify_with_trust(certificate, trust, role=role)
    except VerificationError as exc:
        detail = exc.message.split(": ", 1)[-1]
        raise VerificationError(exc.check, f"{path} failed the {exc.check} check: {detail}")\
            from None
    click.echo(
        f"OK {path}: {name} ({actual.value}), serial {certificate.serial_number:X}, "
        f"expires {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    )
    click.echo(f"  SHA-256  {certificate_fingerprint(certificate)}")
    click.echo(f"  checked  against {_trust_words(trust)}")


def _trust_words(trust: Trust) -> str:
    """Which anchors a verification used, and whether revocation was part of it."""
    where = "the CA" if trust.kind == "ca" else "the CA bundle"
    revocation = ("revocation checked" if trust.crl is not None
                  else "no CRL here: revocation not checked (fx pki import --crl)")
    return f"{where} in {trust.source} ({trust.kind} store); {revocation}"


@pki.command()
@pki_dir_option
@passphrase_option
@click.argument("name")
def revoke(store: PkiStore, passphrase: bytes | None, name: str) -> None:
    """Revoke NAME's certificate: adds it to the CRL that servers load."""
    check_name(name)
    ca = CertificateAuthority.load(store, passphrase=passphrase)
    certificate = load_certificate(store.cert_path(name), f"certificate of {name!r}")
    if ca.is_revoked(certificate):
        click.echo(f"{name!r} (serial {certificate.serial_number:X}) was revoked already")
        return
    ca.revoke(name)
    click.echo(f"revoked {name!r} (serial {certificate.serial_number:X}); CRL updated: "
               f"{store.crl_path}")


@pki.group()
def crl() -> None:
    """The certificate revocation list (CRL) that servers load.

    Servers refuse every caller once the CRL is past its next-update time, or when it is
    replaced by one with a lower number: refresh it on the CA host before it expires.
    """


@crl.command()
@pki_dir_option
@passphrase_option
@click.option("--days", type=click.IntRange(min=1, max=3650), default=CRL_DAYS,
              show_default=True, help="Days until the new CRL's next update (servers refuse it "
              "after that).")
def refresh(store: PkiStore, passphrase: bytes | None, days: int) -> None:
    """Re-sign the CRL: same revoked certificates, a higher number, a fresh next update."""
    ca = CertificateAuthority.load(store, passphrase=passphrase)
    new = ca.refresh_crl(validity=timedelta(days=days))
    click.echo(f"CRL re-signed: number {crl_number(new)}, {len(new)} revoked certificate(s), "
               f"next update {new.next_update_utc:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  CRL  {store.crl_path}")


@pki.command("list")
@pki_dir_option
def list_(store: PkiStore) -> None:
    """Show every certificate: name, role, serial, expiry, revoked."""
    from rich.console import Console
    from rich.table import Table

    from openfl_like.pki.inventory import list_certificates

    rows = list_certificates(store)
    console = Console()
    if not console.is_terminal:
        console = Console(width=200)
    if not rows:
        console.print(f"no certificates in the {store.describe_kind()} yet")
        return
    table = Table(title=f"certificates in the {store.describe_kind()}",
                  caption=None if store.kind() == "ca" or store.crl_path.is_file()
                  else "no CRL here: 'revoked' is not known (fx pki import --crl)")
    for header in ("name", "role", "serial", "expires (UTC)", "revoked", "status"):
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(
            row.name, row.role.value if row.role else "?", row.serial_hex or "?",
            f"{row.not_after:%Y-%m-%d %H:%M}" if row.not_after else "?",
            "yes" if row.revoked else "no", row.status,
        )
    console.print(table)


@pki.command("import")
@pki_dir_option
@click.option("--cert", "cert_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="The signed certificate the CA sent back (NAME.crt).")
@click.option("--ca-bundle", "ca_bundle_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="The CA host's pki/ca/ca-bundle.pem (signing CA + root CA).")
@click.option("--crl", "crl_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="The CA host's pki/ca/crl.pem (a server needs it).")
@click.option("--signing-cert", "signing_cert_file",
              type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="The CA host's pki/ca/signing.crt (written anyway with --crl).")
@click.option("--name", "expected_name", default=None,
              help="Refuse unless the certificate is NAME's.")
@click.option("--force", is_flag=True, help="Replace a different CA bundle (or a newer CRL).")
def import_(store: PkiStore, cert_file: Path, ca_bundle_file: Path, crl_file: Path | None,
            signing_cert_file: Path | None, expected_name: str | None, force: bool) -> None:
    """On a participant's host: import the signed certificate and the CA bundle.

    Checks that the certificate carries the public key of this store's private key of that
    name (made by `fx pki csr`), chains to the bundle and passes every `fx pki verify` check;
    then writes certs/NAME.crt and ca/ca-bundle.pem (and ca/crl.pem, ca/signing.crt),
    creating the folders.
    """
    from openfl_like.pki.importing import import_certificate

    done = import_certificate(store, cert_file=cert_file, ca_bundle_file=ca_bundle_file,
                              crl_file=crl_file, signing_cert_file=signing_cert_file,
                              expected_name=expected_name, force=force)
    click.echo(f"imported the {done.role.value} certificate of {done.name!r} into "
               f"{store.root}")
    click.echo(f"  certificate  {done.cert_path}")
    click.echo(f"  CA bundle    {done.ca_bundle_path}"
               + ("  (replaced a different one)" if done.bundle_replaced else ""))
    if done.crl_path is not None:
        click.echo(f"  CRL          {done.crl_path}")
    if done.signing_cert_path is not None:
        click.echo(f"  signing CA   {done.signing_cert_path}")
    click.echo(f"  SHA-256      {done.fingerprint_sha256}")
    click.echo(f"  expires      {done.not_after:%Y-%m-%d %H:%M} UTC")
