"""A real mutual-TLS DirectorGRPCServer on 127.0.0.1 with certificates from our own PKI."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import grpc
import pytest

from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.protocol.director_service import DIRECTOR_RPCS
from openfl_like.transport.aggregator_client import channel_options
from openfl_like.transport.credentials import TlsFiles, channel_credentials
from openfl_like.transport.director_client import DirectorClient
from openfl_like.transport.director_server import DirectorGRPCServer
from openfl_like.transport.retry import RetryPolicy
from openfl_like.transport.server import RunningServer
from openfl_like.transport.settings import RetrySettings, TransportSettings

from .fake_director import FakeDirector

DIRECTOR = "director"
FEDERATION = "director-fed-1"
ENVOYS = ("envoy-1", "envoy-2")
EXPERIMENTERS = ("exp-a", "exp-b")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiStore:
    store = PkiStore(tmp_path_factory.mktemp("director-pki"))
    ca = CertificateAuthority.init(store)
    ca.certify(DIRECTOR, Role.DIRECTOR, sans=["localhost", "127.0.0.1"])
    for name in ENVOYS:
        ca.certify(name, Role.ENVOY)
    for name in EXPERIMENTERS:
        ca.certify(name, Role.EXPERIMENTER)
    ca.certify("col-a", Role.COLLABORATOR)
    return store


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """For state the server exposes without an event (a slot freed just after the reply)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def fast_settings(**overrides: object) -> TransportSettings:
    base = TransportSettings(
        rpc_timeout_seconds=5.0, stream_timeout_seconds=30.0, long_poll_seconds=5.0,
        server_workers=16, chunk_size=64 * 1024, inline_model_bytes=0, first_message_seconds=2.0,
        retry=RetrySettings(initial_backoff_seconds=0.05, max_backoff_seconds=0.3,
                            total_seconds=2.0),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def fake() -> FakeDirector:
    return FakeDirector(envoy_names=set(ENVOYS), experimenter_names=set(EXPERIMENTERS))


@dataclass
class DirectorHandle:
    pki: PkiStore
    fake: FakeDirector
    kwargs: dict = field(default_factory=dict)
    servicer: DirectorGRPCServer | None = None
    running: RunningServer | None = None

    def start(self, port: int = 0) -> DirectorHandle:
        self.servicer = DirectorGRPCServer(
            self.fake, director_name=DIRECTOR, federation_uuid=FEDERATION,
            tls_files=TlsFiles.for_participant(self.pki, DIRECTOR),
            settings=self.kwargs.get("settings") or fast_settings(),
            **{k: v for k, v in self.kwargs.items() if k != "settings"},
        )
        self.running = self.servicer.start(host="127.0.0.1", port=port)
        return self

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop(0)
            self.running = None

    @property
    def port(self) -> int:
        assert self.running is not None
        return self.running.port


@pytest.fixture
def director(pki: PkiStore, fake: FakeDirector) -> Iterator[DirectorHandle]:
    handle = DirectorHandle(pki, fake).start()
    try:
        yield handle
    finally:
        handle.stop()


ClientFactory = Callable[..., DirectorClient]
RawChannel = Callable[[str], grpc.Channel]


@pytest.fixture
def make_client(pki: PkiStore, director: DirectorHandle) -> Iterator[ClientFactory]:
    clients: list[DirectorClient] = []

    def make(name: str = "envoy-1", *, cert: str | None = None,
             retry: RetryPolicy | None = None, **kwargs: object) -> DirectorClient:
        client = DirectorClient(
            host="127.0.0.1", port=director.port, name=name, director_name=DIRECTOR,
            federation_uuid=FEDERATION, tls_files=TlsFiles.for_participant(pki, cert or name),
            settings=fast_settings(), retry=retry, **kwargs,  # type: ignore[arg-type]
        )
        clients.append(client.connect())
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.close()


@pytest.fixture
def raw_channel(pki: PkiStore, director: DirectorHandle) -> Iterator[RawChannel]:
    """A plain grpc channel with a participant's real certificate (to forge requests)."""
    channels: list[grpc.Channel] = []

    def make(cert: str) -> grpc.Channel:
        channel = grpc.secure_channel(
            f"127.0.0.1:{director.port}",
            channel_credentials(TlsFiles.for_participant(pki, cert)),
            channel_options(fast_settings()))
        channels.append(channel)
        return channel

    try:
        yield make
    finally:
        for channel in channels:
            channel.close()


def raw_call(channel: grpc.Channel, rpc: str, *, raw_bytes: bool = False) -> object:
    """A multi-callable for ``rpc`` on ``channel``; ``raw_bytes``: requests sent as given."""
    spec = DIRECTOR_RPCS[rpc]
    factory = getattr(channel, spec.kind)
    return factory(spec.path,
                   request_serializer=None if raw_bytes else spec.serialize_request,
                   response_deserializer=spec.deserialize_response)
