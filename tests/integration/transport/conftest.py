"""Real mutual-TLS servers on 127.0.0.1 with certificates from our own PKI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.aggregator_server import AggregatorGRPCServer
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.operator_client import OperatorClient
from openfl_like.transport.retry import RetryPolicy
from openfl_like.transport.server import RunningServer
from openfl_like.transport.settings import RetrySettings, TransportSettings

from .fake_handler import FakeHandler

AGGREGATOR = "aggregator"
FEDERATION = "fed-1234"
COLLABORATORS = {"col-a", "col-b", "col-revoked", "expired-col"}


@dataclass(frozen=True)
class Pki:
    store: PkiStore
    ca: CertificateAuthority
    other_store: PkiStore  # a second, unrelated CA

    def files(self, name: str) -> TlsFiles:
        return TlsFiles.for_participant(self.store, name)

    def foreign_files(self, name: str) -> TlsFiles:
        return TlsFiles.for_participant(self.other_store, name)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    store = PkiStore(tmp_path_factory.mktemp("pki"))
    ca = CertificateAuthority.init(store)
    ca.certify(AGGREGATOR, Role.AGGREGATOR, sans=["localhost", "127.0.0.1"])
    for name in ("col-a", "col-b", "col-revoked", "intruder"):
        ca.certify(name, Role.COLLABORATOR)
    now = datetime.now(timezone.utc)
    ca.certify(
        "expired-col", Role.COLLABORATOR,
        not_before=now - timedelta(days=10), not_after=now - timedelta(days=1),
    )
    ca.certify("envoy-1", Role.ENVOY)
    ca.certify("ops1", Role.OPERATOR)
    other = PkiStore(tmp_path_factory.mktemp("other-pki"))
    other_ca = CertificateAuthority.init(other)
    other_ca.certify("col-a", Role.COLLABORATOR)
    return Pki(store, ca, other)


def fast_settings(**overrides: object) -> TransportSettings:
    """Short timeouts and retries so refusal tests finish quickly."""
    base = TransportSettings(
        rpc_timeout_seconds=5.0,
        stream_timeout_seconds=60.0,
        long_poll_seconds=2.0,
        server_workers=16,
        retry=RetrySettings(
            initial_backoff_seconds=0.05, max_backoff_seconds=0.3, total_seconds=1.5
        ),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def handler() -> FakeHandler:
    model = {
        "dense/kernel": np.arange(12, dtype=np.float32).reshape(3, 4),
        "dense/bias": np.array([1.5, -2.0, 0.25], dtype=np.float64),
        "step": np.array(7, dtype=np.int64),
    }
    return FakeHandler(collaborators=set(COLLABORATORS), model=model)


@dataclass
class ServerHandle:
    servicer: AggregatorGRPCServer
    running: RunningServer

    @property
    def port(self) -> int:
        return self.running.port


def start_aggregator(
    pki: Pki, handler: FakeHandler, *, port: int = 0, settings: TransportSettings | None = None,
    **kwargs: object,
) -> ServerHandle:
    servicer = AggregatorGRPCServer(
        handler, aggregator_name=AGGREGATOR, federation_uuid=FEDERATION,
        tls_files=pki.files(AGGREGATOR), settings=settings or fast_settings(),
        **kwargs,  # type: ignore[arg-type]
    )
    return ServerHandle(servicer, servicer.start(host="127.0.0.1", port=port))


@pytest.fixture
def server(pki: Pki, handler: FakeHandler) -> Iterator[ServerHandle]:
    handle = start_aggregator(pki, handler)
    try:
        yield handle
    finally:
        handle.running.stop(0)


ClientFactory = Callable[..., AggregatorGRPCClient]


@pytest.fixture
def make_client(pki: Pki, server: ServerHandle) -> Iterator[ClientFactory]:
    clients: list[AggregatorGRPCClient] = []

    def make(
        name: str = "col-a", *, files: TlsFiles | None = None, sender: str | None = None,
        receiver: str = AGGREGATOR, federation: str = FEDERATION, port: int | None = None,
        settings: TransportSettings | None = None, host: str = "127.0.0.1",
        retry: RetryPolicy | None = None,
    ) -> AggregatorGRPCClient:
        client = AggregatorGRPCClient(
            host=host, port=port or server.port, collaborator_name=sender or name,
            aggregator_name=receiver, federation_uuid=federation,
            tls_files=files or pki.files(name), settings=settings or fast_settings(),
            retry=retry,
        )
        clients.append(client.connect())
        return client

    try:
        yield make
    finally:
        for client in clients:
            client.disconnect()


def make_operator(pki: Pki, port: int, name: str = "ops1", **kwargs: object) -> OperatorClient:
    """An operator's status client for the test aggregator (close it, or use ``with``)."""
    return OperatorClient(
        target=f"127.0.0.1:{port}", operator_name=name, aggregator_name=AGGREGATOR,
        federation_uuid=FEDERATION, tls_files=pki.files(name),
        settings=fast_settings(), **kwargs,  # type: ignore[arg-type]
    )


def cert_files(pki: Pki, name: str) -> tuple[Path, Path]:
    return pki.store.cert_path(name), pki.store.key_path(name)
