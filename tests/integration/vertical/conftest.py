"""Real vertical party servers on 127.0.0.1 (port 0) with certificates from our own PKI.

The server side is the follower "bank"; clients are the leader "shop" (and impostors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest

from openfl_like.core.ids import Role
from openfl_like.core.vertical import PartyRole
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.server import RunningServer
from openfl_like.transport.vertical_client import VerticalPeerClient
from openfl_like.transport.vertical_server import VerticalPeerServer
from openfl_like.transport.vertical_settings import VerticalTransportSettings

from .fake_handler import RecordingHandler

LEADER, FOLLOWER, SESSION = "shop", "bank", "digits-v1"
HOSTS = ["localhost", "127.0.0.1"]


@dataclass(frozen=True)
class Pki:
    store: PkiStore
    ca: CertificateAuthority
    other_store: PkiStore  # an unrelated CA

    def files(self, name: str) -> TlsFiles:
        return TlsFiles.for_participant(self.store, name)

    def foreign_files(self, name: str) -> TlsFiles:
        return TlsFiles.for_participant(self.other_store, name)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    store = PkiStore(tmp_path_factory.mktemp("vpki"))
    ca = CertificateAuthority.init(store)
    for name in (LEADER, FOLLOWER, "mallory"):
        ca.certify(name, Role.PARTY, HOSTS)
    ca.certify("bank-far", Role.PARTY, ["bank.internal.example"])  # lacks the dialled names
    ca.certify("col-shop", Role.COLLABORATOR)
    other = PkiStore(tmp_path_factory.mktemp("vpki-other"))
    CertificateAuthority.init(other).certify(LEADER, Role.PARTY, HOSTS)
    return Pki(store, ca, other)


def fast(**overrides: object) -> VerticalTransportSettings:
    base = VerticalTransportSettings(retry_initial_seconds=0.02, retry_max_seconds=0.1,
                                     first_piece_seconds=0.3)
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class Party:
    handler: RecordingHandler
    server: VerticalPeerServer
    running: RunningServer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"


PartyFactory = Callable[..., Party]


@pytest.fixture
def start_follower(pki: Pki) -> Iterator[PartyFactory]:
    started: list[Party] = []

    def start(*, name: str = FOLLOWER, peer: str = LEADER, tls: bool = True,
              settings: VerticalTransportSettings | None = None, files: TlsFiles | None = None,
              server_threads: int = 4) -> Party:
        handler = RecordingHandler()
        server = VerticalPeerServer(
            handler, me=name, peer=peer, session_id=SESSION, my_role=PartyRole.FOLLOWER,
            tls_files=(files or pki.files(name)) if tls else None,
            settings=settings or fast(), server_threads=server_threads)
        party = Party(handler, server, server.start("127.0.0.1", 0))
        started.append(party)
        return party

    yield start
    for party in started:
        party.running.stop(0)


ClientFactory = Callable[..., VerticalPeerClient]


@pytest.fixture
def make_client(pki: Pki) -> Iterator[ClientFactory]:
    clients: list[VerticalPeerClient] = []

    def make(address: str, *, me: str = LEADER, peer: str = FOLLOWER, files: TlsFiles | None = None,
             tls: bool = True, session_id: str = SESSION, role: PartyRole = PartyRole.LEADER,
             settings: VerticalTransportSettings | None = None) -> VerticalPeerClient:
        client = VerticalPeerClient(
            address, me=me, peer=peer, session_id=session_id, my_role=role,
            tls_files=(files or pki.files(me)) if tls else None, settings=settings or fast())
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def follower(start_follower: PartyFactory) -> Party:
    return start_follower()

