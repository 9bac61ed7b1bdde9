"""The Aggregator service's methods with the (de)serializers each side uses.

Unary methods use the generated classes; the two tensor streams use :mod:`.wire`, which encodes
the same protobuf messages without copying the tensor bytes (see there). Server and client are
both built from this one table, and a test checks it against ``aggregator.proto``.

Requests that are single protobuf messages reach the server as raw bytes
(``server_request_deserializer`` is None) and the servicer parses them with
:meth:`Rpc.parse_request`, after the caller's certificate has been checked. Why: when a
deserializer registered with grpc raises, grpc's failure path logs the exception with its
traceback and keeps ~16-19 KB per call (measured), so a stream of garbage requests grows the
server without bound; parsed in the servicer, garbage becomes INVALID_ARGUMENT with a reason and
costs nothing. The client still serializes with the generated classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from openfl_like.core.errors import ProtocolError
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
    # the request is one protobuf message: the server takes raw bytes and parses them itself
    server_parses: bool = True
    # the full protobuf service name the method belongs to
    service: str = AGGREGATOR_SERVICE

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def server_request_deserializer(self) -> Callable[[bytes], Any] | None:
        """What the server registers with grpc: None (raw bytes) when it parses itself."""
        return None if self.server_parses else self.deserialize_request

    def parse_request(self, data: bytes) -> Any:
        """The request message from raw bytes; ProtocolError (INVALID_ARGUMENT) if malformed."""
        try:
            return self.deserialize_request(data)
        except DecodeError as exc:
            raise ProtocolError(f"{self.name}: malformed request ({exc})") from None


def message_rpc(
    name: str, request: Any, response: Any, *, service: str = AGGREGATOR_SERVICE,
    kind: str = UNARY_UNARY,
) -> Rpc:
    """An RPC whose request and response are generated protobuf classes (the server parses)."""
    return Rpc(
        name, kind,
        request.SerializeToString, request.FromString,
        response.SerializeToString, response.FromString,
        service=service,
    )  # fmt: skip


AGGREGATOR_RPCS: dict[str, Rpc] = {
    rpc.name: rpc
    for rpc in (
        message_rpc("Handshake", pb.HandshakeRequest, pb.HandshakeResponse),
        message_rpc("Heartbeat", pb.HeartbeatRequest, pb.HeartbeatResponse),
        message_rpc("GetTasks", pb.GetTasksRequest, pb.GetTasksResponse),
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
            server_parses=False,  # wire.decode_upload never raises: a bad frame carries .error
        ),
        message_rpc("GetStatus", pb.GetStatusRequest, pb.GetStatusResponse),
    )
}
