"""The status RPC is for operator certificates only; an operator may call nothing else."""

from __future__ import annotations

import threading

import grpc
import pytest

from openfl_like.core.errors import PermissionDeniedError
from openfl_like.transport.operator_client import OperatorClient

from .conftest import AGGREGATOR, FEDERATION, Pki, fast_settings, make_operator


def test_an_operator_gets_the_status(pki: Pki, server, handler):
    # "ops1" is in no plan: operators are authorised by their certificate's role.
    assert "ops1" not in handler.collaborators
    with make_operator(pki, server.port) as operator:
        status = operator.get_status()
    assert status["round"] == 3
    assert status["uploads_in_flight"] == {}


def test_operators_may_ask_from_several_processes_at_once(pki: Pki, server):
    # No instance claim for operators: two terminals watching with one certificate both work.
    answers: list[object] = []

    def ask() -> None:
        with make_operator(pki, server.port) as operator:
            answers.extend(operator.get_status()["round"] for _ in range(5))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert answers == [3] * 10


def test_a_collaborator_certificate_is_refused_by_the_status_rpc(pki: Pki, server):
    client = OperatorClient(
        target=f"127.0.0.1:{server.port}", operator_name="col-a", aggregator_name=AGGREGATOR,
        federation_uuid=FEDERATION, tls_files=pki.files("col-a"), settings=fast_settings())
    with client, pytest.raises(PermissionDeniedError) as refused:
        client.get_status()
    assert refused.value.status_code is grpc.StatusCode.PERMISSION_DENIED
    assert "has role collaborator: GetStatus is for operator certificates only" in str(
        refused.value)


def test_an_operator_cannot_pose_as_another_operator(pki: Pki, server):
    with make_operator(pki, server.port, name="ops1") as operator:
        operator._header.sender = "ops2"  # the header must still name the certificate
        with pytest.raises(Exception, match="does not match the certificate"):
            operator.get_status()


@pytest.mark.parametrize("rpc", ["GetTasks", "Heartbeat", "Handshake"])
def test_an_operator_is_refused_by_every_other_rpc(pki: Pki, make_client, rpc):
    client = make_client("ops1")
    calls = {
        "GetTasks": lambda: client.get_tasks(wait_seconds=0.1),
        "Heartbeat": client.heartbeat,
        "Handshake": lambda: client.handshake("digest-1", {"rounds": "10", "lr": "0.1"}),
    }
    with pytest.raises(PermissionDeniedError) as refused:
        calls[rpc]()
    assert refused.value.status_code is grpc.StatusCode.PERMISSION_DENIED
    assert "has role operator, not collaborator" in str(refused.value)


def test_an_operator_cannot_upload(pki: Pki, make_client):
    import numpy as np

    from openfl_like.core.messages import ResultKey, TaskResult

    client = make_client("ops1")
    with pytest.raises(PermissionDeniedError, match="has role operator"):
        client.send_local_task_results(
            TaskResult(ResultKey("ops1", 3, "train"), data_size=1), {"w": np.zeros(3)})
