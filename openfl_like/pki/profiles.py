"""Certificate profiles: which extensions each kind of certificate carries, and how critical.

The CA decides these from the role alone; nothing is ever copied from a CSR. Every extension is
spelled out with its criticality (RFC 5280 and the CA/B-style profile that verifiers expect):

    root CA     BasicConstraints(ca, pathlen=1) critical, KeyUsage(keyCertSign, cRLSign) critical,
                SubjectKeyIdentifier
    signing CA  BasicConstraints(ca, pathlen=0) critical, KeyUsage(keyCertSign, cRLSign) critical,
                SubjectKeyIdentifier, AuthorityKeyIdentifier (root)
    server leaf (aggregator, director; a vertical party also has clientAuth)
                BasicConstraints(not ca) critical, KeyUsage(digitalSignature [+keyEncipherment for
                RSA]) critical, ExtendedKeyUsage(serverAuth), SubjectAltName(hosts), SKI, AKI
    client leaf (collaborator, envoy, experimenter, operator)
                same, but ExtendedKeyUsage(clientAuth) and SubjectAltName(URI=urn:openfl-like:
                <role>:<name>, plus DNS=<name> when the name is a valid host name)

The identity is the subject: CN=<participant name>, OU=<role>, O=openfl_like.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from openfl_like.core.errors import ConfigError
from openfl_like.core.ids import Role

ORGANIZATION = "openfl_like"
ROOT_VALIDITY = timedelta(days=3650)
SIGNING_VALIDITY = timedelta(days=1826)
LEAF_VALIDITY = timedelta(days=365)
CRL_VALIDITY = timedelta(days=365)
# Backdate notBefore a little so a peer whose clock runs slightly behind accepts a fresh cert.
CLOCK_SKEW = timedelta(minutes=5)

_DNS_LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


@dataclass(frozen=True)
class ExtensionSpec:
    value: x509.ExtensionType
    critical: bool


def leaf_subject(name: str, role: Role) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role.value),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )


def ca_subject(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def default_server_sans() -> list[str]:
    """localhost, 127.0.0.1 and this host's name: what a single-host workspace needs."""
    sans = ["localhost", "127.0.0.1"]
    host = socket.gethostname()
    if host and host not in sans:
        sans.append(host)
    return sans


def _is_dns_name(value: str) -> bool:
    labels = value.rstrip(".").split(".")
    if not value or len(value) > 253:
        return False
    for label in labels:
        if not 1 <= len(label) <= 63 or not set(label) <= _DNS_LABEL_CHARS:
            return False
        if label.startswith("-") or label.endswith("-"):
            return False
    return True


def parse_san(value: str) -> x509.GeneralName:
    """A host name or an IP address as written on the command line, as a GeneralName."""
    text = value.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        pass
    if not _is_dns_name(text):
        raise ConfigError(f"invalid SAN {value!r}: expected a DNS host name or an IP address")
    return x509.DNSName(text.lower())


def san_text(name: x509.GeneralName) -> str:
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    return f"{type(name).__name__}:{name.value}"


def server_sans(sans: Sequence[str] | None) -> list[x509.GeneralName]:
    """Given SANs (or the defaults), de-duplicated, IPs as IP SANs and names as DNS SANs."""
    chosen = list(sans) if sans else default_server_sans()
    names: list[x509.GeneralName] = []
    for item in chosen:
        general = parse_san(item)
        if general not in names:
            names.append(general)
    return names


def participant_uri(name: str, role: Role) -> str:
    """A URI naming the participant; lets every client cert carry a SAN, as verifiers expect."""
    return f"urn:openfl-like:{role.value}:{name}"


def client_sans(name: str, role: Role) -> list[x509.GeneralName]:
    """A client carries a URI SAN naming it (plus a DNS SAN when the name is a valid host name);
    CN=<name> stays the identity that servers check."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(participant_uri(name, role))]
    if _is_dns_name(name):
        names.append(x509.DNSName(name.lower()))
    return names


def ca_extensions(
    public_key: x509.CertificateIssuerPublicKeyTypes,
    *, path_length: int, issuer_key: x509.CertificateIssuerPublicKeyTypes | None,
) -> list[ExtensionSpec]:
    specs = [
        ExtensionSpec(x509.BasicConstraints(ca=True, path_length=path_length), critical=True),
        ExtensionSpec(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        ),
        ExtensionSpec(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False),
    ]
    if issuer_key is not None:
        specs.append(
            ExtensionSpec(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
            )
        )
    return specs


def leaf_extensions(
    role: Role,
    public_key: x509.CertificateIssuerPublicKeyTypes,
    issuer_key: x509.CertificateIssuerPublicKeyTypes,
    sans: list[x509.GeneralName],
) -> list[ExtensionSpec]:
    specs = [
        ExtensionSpec(x509.BasicConstraints(ca=False, path_length=None), critical=True),
        ExtensionSpec(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        ),
        ExtensionSpec(x509.ExtendedKeyUsage(list(required_ekus(role))), critical=False),
        ExtensionSpec(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False),
        ExtensionSpec(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key), critical=False
        ),
    ]
    if sans:
        specs.append(ExtensionSpec(x509.SubjectAlternativeName(sans), critical=False))
    return specs


def required_ekus(role: Role) -> tuple[x509.ObjectIdentifier, ...]:
    """serverAuth for a server, clientAuth for a client; a vertical party is both."""
    usages: list[x509.ObjectIdentifier] = []
    if role.is_server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if role.is_client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    return tuple(usages)
