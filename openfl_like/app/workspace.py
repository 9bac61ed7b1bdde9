"""Workspace set-up for single-host runs: the PKI and the certificates a plan or director needs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from openfl_like.core.ids import Role
from openfl_like.core.logging import get_logger
from openfl_like.pki import CertificateAuthority, PkiStore

log = get_logger(__name__)

LOCAL_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True)
class PkiReport:
    created_ca: bool
    issued: tuple[str, ...]


def _issue_missing(store: PkiStore, wanted: Sequence[tuple[str, Role]],
                   server_hosts: Iterable[str]) -> PkiReport:
    """Make the CA if there is none, then every wanted certificate that is missing. Server
    certificates name this host (localhost, 127.0.0.1) and ``server_hosts`` in their SANs."""
    created = False
    if store.signing_cert_path.exists():
        ca = CertificateAuthority.load(store)
    else:
        log.info("no CA in %s: creating a root and a signing CA", store.root)
        ca = CertificateAuthority.init(store)
        created = True
    hosts = [*LOCAL_HOSTS, *[h for h in server_hosts if h not in LOCAL_HOSTS]]
    issued: list[str] = []
    for name, role in wanted:
        if store.cert_path(name).exists() and store.key_path(name).exists():
            continue
        ca.certify(name, role, hosts if role.is_server else None)
        issued.append(name)
        log.info("issued %s certificate for %s", role.value, name)
    return PkiReport(created_ca=created, issued=tuple(issued))


def ensure_pki(
    store: PkiStore, *, aggregator: str, collaborators: Iterable[str],
    aggregator_hosts: Iterable[str] = (),
) -> PkiReport:
    """Make the CA and the certificates that are missing; never replace existing ones."""
    wanted = [(aggregator, Role.AGGREGATOR)] + [(c, Role.COLLABORATOR) for c in collaborators]
    return _issue_missing(store, wanted, aggregator_hosts)


def ensure_director_pki(
    store: PkiStore, *, director: str, envoys: Iterable[str], experimenters: Iterable[str],
    director_hosts: Iterable[str] = (),
) -> PkiReport:
    """The CA and the certificates of a single-host director set-up (demo, tests): the
    director's (a server certificate, also presented by its experiments' aggregators), one per
    envoy and one per experimenter. Existing ones are kept."""
    wanted = ([(director, Role.DIRECTOR)] + [(e, Role.ENVOY) for e in envoys]
              + [(x, Role.EXPERIMENTER) for x in experimenters])
    return _issue_missing(store, wanted, director_hosts)


def ensure_vertical_pki(store: PkiStore, *, parties: Iterable[str],
                        hosts: Iterable[str] = ()) -> PkiReport:
    """The CA and one ``party`` certificate per party of a single-host vertical pair (both
    serve and call, so each certificate names this host and ``hosts`` in its SANs)."""
    return _issue_missing(store, [(p, Role.PARTY) for p in parties], hosts)
