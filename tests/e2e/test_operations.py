"""Operations through the real `fx` CLI: remote status with an operator certificate, and
grpc.health.v1 of a running `fx aggregator start` (SERVING, then NOT_SERVING on SIGTERM)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority
from openfl_like.transport.credentials import TlsFiles, channel_credentials

from .conftest import (
    COLLABORATORS,
    Federation,
    ProcessRegistry,
    assert_clean_error,
    copy_plan,
    free_port,
    fx_env,
    make_pki,
    run_fx,
)

pytestmark = pytest.mark.e2e

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.timeout(180)
def test_operator_status_and_health_of_a_running_aggregator(
        tmp_path: Path, procs: ProcessRegistry) -> None:
    # Prepare: an aggregator waiting for its collaborators; an operator certificate
    store = make_pki(tmp_path / "pki")
    CertificateAuthority.load(store).certify("ops1", Role.OPERATOR)
    plan = copy_plan("numpy_digits", tmp_path / "plan", {
        "aggregator.rounds_to_train": 2, "aggregator.write_tensorboard": False,
        "aggregator.write_plot": False})
    fed = Federation(plan, store.root, tmp_path / "ws", free_port(), procs)
    aggregator = fed.start_aggregator()
    remote = ("aggregator", "status", "-p", plan, "--pki-dir", store.root,
              "--aggregator", f"127.0.0.1:{fed.port}")

    # Execute + Assert: the operator's remote status, as JSON and as text (name from the env)
    as_json = run_fx(*remote, "-n", "ops1", "--json", cwd=tmp_path, timeout=60)
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    status = json.loads(as_json.stdout)
    assert (status["round"], status["rounds_to_train"], status["phase"]) == (0, 2, "training")
    assert status["waiting_for"] == sorted(COLLABORATORS)
    assert status["uploads_in_flight"] == {}
    assert status["estimate"]["round_remaining_seconds"] is None  # no round closed yet
    text = run_fx(*remote, cwd=tmp_path, timeout=60, env=fx_env(FX_OPERATOR="ops1"))
    assert text.returncode == 0, text.stdout + text.stderr
    assert "round 0 of 2, phase training" in text.stdout
    assert "waiting for: col1, col2, col3" in text.stdout

    # a collaborator's certificate is refused by the status RPC
    refused = run_fx(*remote, "-n", "col1", "--json", cwd=tmp_path, timeout=60)
    assert_clean_error(refused, mentions=("GetStatus is for operator certificates only",))

    # health: SERVING, and a Watch stream sees NOT_SERVING when SIGTERM stops the aggregator
    files = TlsFiles.for_participant(store, "ops1")
    with grpc.secure_channel(f"127.0.0.1:{fed.port}", channel_credentials(files)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        checks = {s: stub.Check(health_pb2.HealthCheckRequest(service=s), timeout=10).status
                  for s in ("", "openfl_like.v1.Aggregator", "grpc.health.v1.Health")}
        stream = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        seen = [next(stream).status]
        threading.Timer(0.2, aggregator.signal_group, args=(signal.SIGTERM,)).start()
        seen.append(next(stream).status)
    assert checks == dict.fromkeys(checks, SERVING)
    assert seen == [SERVING, NOT_SERVING]
    aggregator.wait_ok(60)

    # after the stop, the local status says so
    local = fed.status()
    assert local["running"] is False and local["phase"] == "stopped", local
    shown = run_fx("aggregator", "status", "-p", plan, "--workspace", fed.workspace,
                   cwd=tmp_path, timeout=60)
    assert "the aggregator is not running: it has stopped" in shown.stdout, shown.stdout
