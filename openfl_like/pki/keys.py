"""Private keys: generate (ECDSA P-384 or RSA 3072), serialise (optionally encrypted), load.

Keys are always written with mode 0600 through ``core.fsutil``, so they are never readable by
others, not even for the moment between creating and renaming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from openfl_like.core.errors import ConfigError, PkiError

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]
KEY_TYPES = ("ec", "rsa")
RSA_BITS = 3072
EC_CURVE = ec.SECP384R1
SIGNATURE_HASH = hashes.SHA384


def check_key_type(key_type: str) -> str:
    if key_type not in KEY_TYPES:
        known = ", ".join(KEY_TYPES)
        raise ConfigError(f"unknown key type {key_type!r} (expected one of: {known})")
    return key_type


def generate_private_key(key_type: str = "ec") -> PrivateKey:
    """A fresh key: ECDSA on P-384 (default, fast) or RSA 3072."""
    if check_key_type(key_type) == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ec.generate_private_key(EC_CURVE())


def private_key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM; encrypted with the best available scheme when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_key(path: Path, passphrase: bytes | None = None) -> PrivateKey:
    """Read a PEM key, with errors that say what is wrong (missing, encrypted, corrupt)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PkiError(f"private key not found: {path}") from None
    except OSError as exc:
        raise PkiError(f"cannot read private key {path}: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        if passphrase:
            raise PkiError(
                f"private key {path} is not encrypted, but a passphrase was given"
            ) from None
        raise PkiError(
            f"private key {path} is encrypted: give its passphrase "
            "(--passphrase-file or FX_CA_PASSPHRASE)"
        ) from None
    except ValueError:
        if passphrase:
            raise PkiError(
                f"cannot decrypt private key {path}: wrong passphrase or corrupt file"
            ) from None
        raise PkiError(f"corrupt or unsupported private key: {path}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise PkiError(f"unsupported private key type in {path} (expected EC or RSA)")
    return key


def key_type_of(key: PrivateKey) -> str:
    return "rsa" if isinstance(key, rsa.RSAPrivateKey) else "ec"
