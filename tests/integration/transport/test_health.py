"""grpc.health.v1 on the aggregator's and the director's ports, asked with grpcio-health-checking's
own client stub over mutual TLS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from openfl_like.app.director import start_director
from openfl_like.app.workspace import ensure_director_pki
from openfl_like.pki import PkiStore
from openfl_like.plan.director_config import load_director_config
from openfl_like.transport.credentials import TlsFiles, channel_credentials

from .conftest import Pki, start_aggregator

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
AGGREGATOR_SERVICES = ("", "openfl_like.v1.Aggregator", "grpc.health.v1.Health")


@contextmanager
def health_stub(files: TlsFiles, port: int) -> Iterator[health_pb2_grpc.HealthStub]:
    channel = grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(files))
    try:
        yield health_pb2_grpc.HealthStub(channel)
    finally:
        channel.close()


def check(stub: health_pb2_grpc.HealthStub, service: str = "") -> int:
    reply: health_pb2.HealthCheckResponse = stub.Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5)
    return reply.status


@pytest.mark.parametrize("caller", ["col-a", "ops1", "envoy-1"])
def test_every_service_is_serving_for_any_certificate_of_our_ca(pki: Pki, server, caller):
    with health_stub(pki.files(caller), server.port) as stub:
        statuses = {service: check(stub, service) for service in AGGREGATOR_SERVICES}
        with pytest.raises(grpc.RpcError) as unknown:
            check(stub, "no.such.Service")
    assert statuses == dict.fromkeys(AGGREGATOR_SERVICES, SERVING)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND


def test_health_needs_a_certificate_of_our_ca(pki: Pki, server):
    with health_stub(pki.foreign_files("col-a"), server.port) as stub, \
            pytest.raises(grpc.RpcError) as refused:
        check(stub)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE  # refused in the TLS handshake


def test_not_serving_is_reported_and_serving_again(pki: Pki, server):
    with health_stub(pki.files("ops1"), server.port) as stub:
        server.servicer.health.set_not_serving()  # e.g. resuming saved state
        during = {service: check(stub, service) for service in AGGREGATOR_SERVICES}
        assert not server.servicer.health.is_serving()
        server.servicer.health.set_serving()
        after = check(stub, "openfl_like.v1.Aggregator")
    assert during == dict.fromkeys(AGGREGATOR_SERVICES, NOT_SERVING)
    assert after == SERVING and server.servicer.health.is_serving()


@pytest.mark.parametrize("service", ["", "openfl_like.v1.Aggregator"])
def test_watch_sees_serving_then_not_serving_when_the_server_stops(pki: Pki, handler, service):
    handle = start_aggregator(pki, handler)
    seen: list[int] = []
    try:
        with health_stub(pki.files("col-a"), handle.port) as stub:
            stream = stub.Watch(health_pb2.HealthCheckRequest(service=service), timeout=10)
            seen.append(next(stream).status)
            stopper = threading.Thread(target=handle.running.stop, args=(3.0,))
            stopper.start()
            try:
                seen.append(next(stream).status)  # pushed before the grace ends the stream
            finally:
                stopper.join(10)
    finally:
        handle.running.stop(0)
    assert seen == [SERVING, NOT_SERVING]
    assert not handle.servicer.health.is_serving()


def test_a_stopped_server_stays_not_serving(pki: Pki, handler):
    handle = start_aggregator(pki, handler)
    handle.running.stop(0)
    handle.servicer.health.set_serving()  # too late: a stopping server never serves again
    assert not handle.servicer.health.is_serving()


# -- the director ---------------------------------------------------------------------------


@pytest.fixture
def director_config(tmp_path: Path) -> Path:
    ensure_director_pki(PkiStore(tmp_path / "pki"), director="director", envoys=("env_a",),
                        experimenters=("alice",))
    config = tmp_path / "director.yaml"
    config.write_text(yaml.safe_dump({"director": {
        "name": "director", "host": "127.0.0.1", "port": 0, "federation": "health_lab",
        "workspace": "workspace/director", "heartbeat_seconds": 1.0,
    }}))
    return config


def test_director_reports_serving_then_not_serving_on_stop(director_config: Path):
    store = PkiStore(director_config.parent / "pki")
    running = start_director(load_director_config(director_config), pki=store, port=0)
    try:
        with health_stub(TlsFiles.for_participant(store, "env_a"), running.port) as stub:
            before = {s: check(stub, s) for s in ("", "openfl_like.v1.Director",
                                                  "grpc.health.v1.Health")}
            stream = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
            first = next(stream).status
            stopper = threading.Thread(target=running.stop)
            stopper.start()
            try:
                second = next(stream).status
            finally:
                stopper.join(15)
    finally:
        if running.health is not None and running.health.is_serving():
            running.stop()
    assert before == dict.fromkeys(before, SERVING)
    assert (first, second) == (SERVING, NOT_SERVING)
    assert running.health is not None and not running.health.is_serving()
