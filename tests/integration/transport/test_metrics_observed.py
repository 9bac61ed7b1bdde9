"""Real mutual-TLS server and client with Prometheus observers: what each side counts."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from openfl_like.core.errors import (
    ConnectionFailedError,
    PermissionDeniedError,
    PlanMismatchError,
)
from openfl_like.core.messages import ResultKey, TaskResult
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.metrics import AggregatorMetrics, CollaboratorMetrics

from .conftest import AGGREGATOR, FEDERATION, Pki, fast_settings, start_aggregator
from .fake_handler import FakeHandler


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


@pytest.fixture
def observed(pki: Pki, handler: FakeHandler):
    metrics = AggregatorMetrics()
    handle = start_aggregator(pki, handler, observer=metrics)
    try:
        yield handle, metrics
    finally:
        handle.running.stop(0)


def client_for(pki: Pki, port: int, name: str = "col-a", *, receiver: str = AGGREGATOR,
               federation: str = FEDERATION, metrics: CollaboratorMetrics | None = None
               ) -> AggregatorGRPCClient:
    return AggregatorGRPCClient(
        host="127.0.0.1", port=port, collaborator_name=name, aggregator_name=receiver,
        federation_uuid=federation, tls_files=pki.files(name), settings=fast_settings(),
        observer=metrics)


def test_both_sides_count_the_same_bytes_and_the_results(pki, handler, observed):
    # Prepare
    handle, server = observed
    metrics = CollaboratorMetrics()
    upload = {"w": np.ones((256, 64), dtype=np.float32)}
    key = ResultKey("col-a", 3, "train")
    handler.work.set()

    # Execute
    with client_for(pki, handle.port, metrics=metrics) as client:
        client.handshake("digest-1", {"rounds": "10", "lr": "0.1"})
        client.get_tasks(wait_seconds=1.0)
        client.get_aggregated_tensors(3, ["dense/kernel", "dense/bias", "step"])
        client.send_local_task_results(TaskResult(key, 100, {"loss": 0.5}), upload)
        client.send_local_task_results(TaskResult(key, 100, {"loss": 0.5}), upload)  # a retry

    # Assert: every message counted once on each side, serialized sizes equal
    sent = value(metrics.registry, "openfl_collaborator_sent_bytes_total")
    received = value(metrics.registry, "openfl_collaborator_received_bytes_total")
    assert sent > 2 * upload["w"].nbytes
    assert value(server.registry, "openfl_aggregator_received_bytes_total") == sent
    assert value(server.registry, "openfl_aggregator_sent_bytes_total") == received
    r = server.registry
    assert value(r, "openfl_aggregator_results_accepted_total") == 1
    assert value(r, "openfl_aggregator_results_duplicate_total") == 1
    assert value(r, "openfl_aggregator_transfer_tensor_bytes_total",
                 direction="upload") == 2 * upload["w"].nbytes
    assert value(r, "openfl_aggregator_transfer_tensor_bytes_total", direction="download") > 0
    assert value(r, "openfl_aggregator_transfer_throughput_bytes_per_second_count",
                 direction="upload") == 2
    assert value(r, "openfl_aggregator_parked_polls") == 0


# (An expired or foreign certificate is refused in the TLS handshake, before gRPC sees a call:
# grpc cannot count those; the operator sees them in the TLS log lines.)
@pytest.mark.parametrize(("name", "receiver", "federation", "error", "code", "check"), [
    ("intruder", AGGREGATOR, FEDERATION, PermissionDeniedError, "PERMISSION_DENIED",
     "not_authorised"),
    ("col-a", "someone-else", FEDERATION, PermissionDeniedError, "PERMISSION_DENIED",
     "wrong_receiver"),
    ("col-a", AGGREGATOR, "another-fed", PlanMismatchError, "FAILED_PRECONDITION",
     "wrong_federation"),
])
def test_refused_calls_are_counted_by_code_and_check(pki, observed, name, receiver, federation,
                                                      error, code, check):
    # Prepare
    handle, server = observed

    # Execute
    with client_for(pki, handle.port, name, receiver=receiver, federation=federation) as client, \
            pytest.raises(error):
        client.heartbeat()

    # Assert
    assert value(server.registry, "openfl_aggregator_calls_refused_total",
                 method="Heartbeat", code=code, check=check) == 1


def test_a_parked_poll_is_a_gauge_while_it_waits(pki, handler, observed):
    # Prepare
    handle, server = observed
    seen: list[float] = []

    # Execute
    with client_for(pki, handle.port) as client:
        poll = threading.Thread(target=client.get_tasks, kwargs={"wait_seconds": 2.0})
        poll.start()
        end = time.monotonic() + 5
        while time.monotonic() < end and not seen:
            parked = value(server.registry, "openfl_aggregator_parked_polls")
            if parked:
                seen.append(parked)
            time.sleep(0.01)
        handler.work.set()
        poll.join(5)

    # Assert
    assert seen == [1.0]
    assert value(server.registry, "openfl_aggregator_parked_polls") == 0


def test_retries_are_counted_by_status_code(pki):
    # Prepare: nobody listens on this port
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    metrics = CollaboratorMetrics()

    # Execute
    with client_for(pki, port, metrics=metrics) as client, \
            pytest.raises(ConnectionFailedError):
        client.heartbeat()

    # Assert
    assert value(metrics.registry, "openfl_collaborator_retries_total", code="UNAVAILABLE") >= 2
    assert value(metrics.registry, "openfl_collaborator_reconnects_total") == 0
