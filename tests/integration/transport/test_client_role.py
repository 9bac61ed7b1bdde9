"""network.client_role: an aggregator a director starts accepts envoy certificates (and then only
those); by default it accepts collaborator certificates only."""

from __future__ import annotations

import pytest

from openfl_like.core.errors import PermissionDeniedError
from openfl_like.transport.aggregator_client import AggregatorGRPCClient

from .conftest import AGGREGATOR, FEDERATION, Pki, fast_settings, start_aggregator
from .fake_handler import FakeHandler


def _client(pki: Pki, name: str, port: int) -> AggregatorGRPCClient:
    return AggregatorGRPCClient(
        host="127.0.0.1", port=port, collaborator_name=name, aggregator_name=AGGREGATOR,
        federation_uuid=FEDERATION, tls_files=pki.files(name), settings=fast_settings(),
    )


@pytest.mark.parametrize(
    ("client_role", "accepted", "refused", "refused_role"),
    [("envoy", "envoy-1", "col-a", "collaborator"),
     ("collaborator", "col-a", "envoy-1", "envoy")],
)
def test_the_aggregator_accepts_only_its_client_role(
    pki: Pki, handler: FakeHandler, client_role: str, accepted: str, refused: str,
    refused_role: str,
) -> None:
    # Prepare: both names are participants of the plan; only the role differs
    handler.collaborators |= {"envoy-1", "col-a"}
    settings = fast_settings() if client_role == "collaborator" else fast_settings(
        client_role=client_role)
    server = start_aggregator(pki, handler, settings=settings)
    try:
        with _client(pki, accepted, server.port) as good, \
                _client(pki, refused, server.port) as bad:
            # Execute / Assert
            assert good.handshake("digest-1", {"rounds": "10", "lr": "0.1"}).round_number == 3
            assert good.heartbeat() is not None
            with pytest.raises(PermissionDeniedError,
                               match=f"has role {refused_role}, not {client_role}"):
                bad.heartbeat()
    finally:
        server.running.stop(0)
