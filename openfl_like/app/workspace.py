"""Workspace set-up for single-host runs: the PKI and the certificates a plan needs."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from openfl_like.core.ids import Role
from openfl_like.core.logging import get_logger
from openfl_like.pki import CertificateAuthority, PkiStore

log = get_logger(__name__)


@dataclass(frozen=True)
class PkiReport:
    created_ca: bool
    issued: tuple[str, ...]


def ensure_pki(
    store: PkiStore, *, aggregator: str, collaborators: Iterable[str],
    aggregator_hosts: Iterable[str] = (),
) -> PkiReport:
    """Make the CA and the certificates that are missing; never replace existing ones."""
    created = False
    if store.signing_cert_path.exists():
        ca = CertificateAuthority.load(store)
    else:
        log.info("no CA in %s: creating a root and a signing CA", store.root)
        ca = CertificateAuthority.init(store)
        created = True
    issued: list[str] = []
    wanted = [(aggregator, Role.AGGREGATOR)] + [(c, Role.COLLABORATOR) for c in collaborators]
    for name, role in wanted:
        if store.cert_path(name).exists() and store.key_path(name).exists():
            continue
        sans = None
        if role is Role.AGGREGATOR:
            extra = [h for h in aggregator_hosts if h not in ("localhost", "127.0.0.1")]
            sans = ["localhost", "127.0.0.1", *extra]
        ca.certify(name, role, sans)
        issued.append(name)
        log.info("issued %s certificate for %s", role.value, name)
    return PkiReport(created_ca=created, issued=tuple(issued))
