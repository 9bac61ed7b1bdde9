"""Edge checks of inbound messages: raw-bytes parsing and result metadata bounds."""

from __future__ import annotations

import math

import pytest

from openfl_like.core.errors import ProtocolError
from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import base_pb2
from openfl_like.protocol.convert import (
    MAX_DATA_SIZE,
    MAX_METRIC_NAME_CHARS,
    MAX_METRICS,
    result_from_pb,
)
from openfl_like.protocol.service import AGGREGATOR_RPCS, STREAM_UNARY


def test_server_parses_every_single_message_request_itself() -> None:
    for name, rpc in AGGREGATOR_RPCS.items():
        if rpc.kind == STREAM_UNARY:  # the upload's frames are decoded without raising
            assert rpc.server_request_deserializer is rpc.deserialize_request, name
        else:
            assert rpc.server_request_deserializer is None, name


def test_parse_request_round_trip_and_garbage() -> None:
    rpc = AGGREGATOR_RPCS["GetTasks"]
    request = pb.GetTasksRequest(header=base_pb2.MessageHeader(sender="col"), wait_seconds=2.5)
    assert rpc.parse_request(request.SerializeToString()) == request
    with pytest.raises(ProtocolError, match="GetTasks: malformed request"):
        rpc.parse_request(b"\x0a\xff\xff\xff\xff\x07garbage")


def meta(**changes: object) -> pb.ResultMeta:
    fields = {"collaborator": "col", "round_number": 1, "task_name": "train", "data_size": 10,
              "metrics": {"loss": 0.25}}
    fields.update(changes)
    return pb.ResultMeta(**fields)  # type: ignore[arg-type]


def test_results_within_the_bounds_pass() -> None:
    edge = meta(data_size=MAX_DATA_SIZE - 1,
                metrics={"m" * MAX_METRIC_NAME_CHARS: -1e300,
                         **{f"k{i}": float(i) for i in range(MAX_METRICS - 1)}})
    result = result_from_pb(edge)
    assert result.data_size == MAX_DATA_SIZE - 1 and len(result.metrics) == MAX_METRICS
    assert result_from_pb(meta(data_size=0, metrics={})).data_size == 0


@pytest.mark.parametrize(("changes", "match"), [
    ({"data_size": -5}, r"data_size -5 is outside \[0, 2\*\*53\)"),
    ({"data_size": MAX_DATA_SIZE}, "outside"),
    ({"metrics": {f"k{i}": 0.0 for i in range(MAX_METRICS + 1)}}, "257 metrics"),
    ({"metrics": {"m" * (MAX_METRIC_NAME_CHARS + 1): 0.0}}, "1 to 128 characters .has 129"),
    ({"metrics": {"": 0.0}}, "1 to 128 characters"),
    ({"metrics": {"loss": math.nan}}, "'loss' is nan"),
    ({"metrics": {"loss": -math.inf}}, "'loss' is -inf"),
    ({"task_name": ""}, "without a task name"),
])  # fmt: skip
def test_results_outside_the_bounds_are_refused(changes: dict, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        result_from_pb(meta(**changes))
