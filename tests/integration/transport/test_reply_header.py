"""The client refuses replies whose header is not from our aggregator, to us, in our federation."""

from __future__ import annotations

import numpy as np
import pytest

from openfl_like.core.errors import AuthError
from openfl_like.core.messages import ResultKey, TaskResult
from openfl_like.protocol import base_pb2

from .conftest import AGGREGATOR, FEDERATION, make_operator


def _forge(server, **changes: str) -> None:
    """Make the running servicer sign its replies with a different header."""

    def reply_header(collaborator: str) -> base_pb2.MessageHeader:
        fields = {"sender": AGGREGATOR, "receiver": collaborator, "federation_uuid": FEDERATION}
        return base_pb2.MessageHeader(**{**fields, **changes})

    server.servicer._reply_header = reply_header


CASES = [
    ({"sender": "other-aggregator"}, "comes from 'other-aggregator'"),
    ({"receiver": "col-b"}, "addressed to 'col-b', not to us"),
    ({"federation_uuid": "fed-9999"}, "federation 'fed-9999', not ours"),
]


@pytest.mark.parametrize(("changes", "match"), CASES)
def test_every_rpc_checks_the_reply_header(server, make_client, changes, match):
    client = make_client("col-a")
    assert client.heartbeat().round_number == 3  # the genuine header passes
    _forge(server, **changes)
    key = ResultKey("col-a", 3, "train")
    calls = {
        "handshake": lambda: client.handshake("digest-1", {"rounds": "10", "lr": "0.1"}),
        "heartbeat": client.heartbeat,
        "get tasks": lambda: client.get_tasks(wait_seconds=0.1),
        "get aggregated tensors": lambda: client.get_aggregated_tensors(3, ["step"]),
        "send local task results": lambda: client.send_local_task_results(
            TaskResult(key, data_size=1), {"w": np.zeros(3)}
        ),
    }
    for what, call in calls.items():
        with pytest.raises(AuthError, match=f"^{what}: .*{match}"):
            call()


@pytest.mark.parametrize(("changes", "match"), CASES)
def test_the_operator_client_checks_the_reply_header(pki, server, changes, match):
    with make_operator(pki, server.port) as operator:
        assert operator.get_status()["round"] == 3  # the genuine header passes
        _forge(server, **changes)
        with pytest.raises(AuthError, match=f"^get status: .*{match}"):
            operator.get_status()
