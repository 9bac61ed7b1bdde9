"""The Aggregator service's methods with the (de)serializers each side uses.

Unary methods use the generated classes; the two tensor streams use :mod:`.wire`, which encodes
the same protobuf messages without copying the tensor bytes (see there). Server and client are
both built from this one table, and a test checks it against ``aggregator.proto``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import wire

AGGREGATOR_SERVICE = "openfl_like.v1.Aggregator"

UNARY_UNARY = "unary_unary"
UNARY_STREAM = "unary_stream"
STREAM_UNARY = "stream_unary"


@dataclass(frozen=True)
class Rpc:
    name: str
    kind: str
    serialize_request: Callable[[Any], bytes]
    deserialize_request: Callable[[bytes], Any]
    serialize_response: Callable[[Any], bytes]
    deserialize_response: Callable[[bytes], Any]

    @property
    def path(self) -> str:
        return f"/{AGGREGATOR_SERVICE}/{self.name}"


def _unary(name: str, request: Any, response: Any) -> Rpc:
    return Rpc(
        name, UNARY_UNARY,
        request.SerializeToString, request.FromString,
        response.SerializeToString, response.FromString,
    )  # fmt: skip


AGGREGATOR_RPCS: dict[str, Rpc] = {
    rpc.name: rpc
    for rpc in (
        _unary("Handshake", pb.HandshakeRequest, pb.HandshakeResponse),
        _unary("Heartbeat", pb.HeartbeatRequest, pb.HeartbeatResponse),
        _unary("GetTasks", pb.GetTasksRequest, pb.GetTasksResponse),
        Rpc(
            "GetAggregatedTensors", UNARY_STREAM,
            pb.GetAggregatedTensorsRequest.SerializeToString,
            pb.GetAggregatedTensorsRequest.FromString,
            wire.encode_download, wire.decode_download,
        ),
        Rpc(
            "SendLocalTaskResults", STREAM_UNARY,
            wire.encode_upload, wire.decode_upload,
            pb.SendLocalTaskResultsResponse.SerializeToString,
            pb.SendLocalTaskResultsResponse.FromString,
        ),
        _unary("GetStatus", pb.GetStatusRequest, pb.GetStatusResponse),
    )
}
