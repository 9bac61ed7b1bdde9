"""Our own two-tier PKI for mutual TLS. Only ``cryptography``: never grpc, click or yaml.

Public surface::

    PkiStore(root)                       the on-disk layout (paths only)
    CertificateAuthority.init/load       root + signing CA; certify, sign_csr, revoke
    IssuedCertificate                    what the CA wrote
    verify_certificate(cert, store)      -> (name, role), or VerificationError(check, message)
    RevocationChecker(crl, signing)      cheap per-request revocation check for servers
    participant_name / participant_role  identity of a peer certificate (CN / OU)
"""

from openfl_like.pki.authority import CertificateAuthority, IssuedCertificate
from openfl_like.pki.identity import participant_name, participant_role
from openfl_like.pki.revocation import RevocationChecker
from openfl_like.pki.store import PkiStore
from openfl_like.pki.verify import verify_certificate

__all__ = [
    "CertificateAuthority",
    "IssuedCertificate",
    "PkiStore",
    "RevocationChecker",
    "participant_name",
    "participant_role",
    "verify_certificate",
]
