"""Reading certificates from files with errors that name the file and what is wrong."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from openfl_like.core.errors import PkiError


def read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PkiError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise PkiError(f"{what} is a directory, not a file: {path}") from None
    except OSError as exc:
        raise PkiError(f"cannot read {what} {path}: {exc.strerror}") from None


def parse_certificate(data: bytes, what: str = "certificate") -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise PkiError(f"corrupt {what}: not a PEM or DER X.509 certificate") from None


def load_certificate(path: Path, what: str = "certificate") -> x509.Certificate:
    data = read_file(path, what)
    try:
        return parse_certificate(data, what)
    except PkiError:
        raise PkiError(f"corrupt {what}: {path} is not a PEM or DER X.509 certificate") from None


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)
