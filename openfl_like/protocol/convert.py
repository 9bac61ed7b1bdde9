"""Generated protobuf messages <-> the plain messages of ``core.messages``, both directions.

Inbound result metadata is bounded here, at the edge, so the logic behind never sees a metrics
map of a million keys, a NaN loss or a negative sample count: at most ``MAX_METRICS`` metrics,
names of at most ``MAX_METRIC_NAME_CHARS`` characters, finite values, and ``0 <= data_size <
2**53`` (beyond that a float weight loses integers). Each refusal is a ProtocolError naming it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from openfl_like.core.errors import ProtocolError
from openfl_like.core.messages import (
    HandshakeReply,
    Header,
    HeartbeatReply,
    PollStatus,
    ResultAck,
    ResultKey,
    TaskKind,
    TaskResult,
    TaskSpec,
    TasksReply,
)
from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import base_pb2
from openfl_like.protocol.chunking import Chunk, join_tensors, split_tensors


def header_to_pb(header: Header) -> base_pb2.MessageHeader:
    return base_pb2.MessageHeader(
        sender=header.sender,
        receiver=header.receiver,
        federation_uuid=header.federation_uuid,
        single_col_cert_common_name=header.single_col_cert_common_name,
    )


def header_from_pb(header: base_pb2.MessageHeader) -> Header:
    return Header(
        sender=header.sender,
        receiver=header.receiver,
        federation_uuid=header.federation_uuid,
        single_col_cert_common_name=header.single_col_cert_common_name,
    )


def task_to_pb(task: TaskSpec) -> pb.Task:
    return pb.Task(
        name=task.name,
        kind=str(task.kind),
        round_number=task.round_number,
        params_json=json.dumps(dict(task.params), sort_keys=True),
    )


def task_from_pb(task: pb.Task) -> TaskSpec:
    try:
        kind = TaskKind(task.kind)
        params = json.loads(task.params_json) if task.params_json else {}
    except ValueError as exc:
        raise ProtocolError(f"task {task.name!r}: {exc}") from None
    if not isinstance(params, dict):
        raise ProtocolError(f"task {task.name!r}: params must be a JSON object")
    return TaskSpec(name=task.name, kind=kind, round_number=task.round_number, params=params)


def tasks_reply_to_pb(reply: TasksReply, header: base_pb2.MessageHeader) -> pb.GetTasksResponse:
    model = [base_pb2.TensorChunk(meta=c.meta, data=bytes(c.data))
             for c in split_tensors(reply.model, 1 << 62)]  # (one chunk per tensor)
    return pb.GetTasksResponse(
        header=header,
        status=str(reply.status),
        round_number=reply.round_number,
        tasks=[task_to_pb(t) for t in reply.tasks],
        reason=reply.reason,
        model=model,
    )


def tasks_reply_from_pb(response: pb.GetTasksResponse, *, max_model_bytes: int = 0
                        ) -> TasksReply:
    try:
        status = PollStatus(response.status)
    except ValueError:
        raise ProtocolError(f"unknown poll status {response.status!r}") from None
    model = tuple(join_tensors(
        (Chunk(c.data, c.meta if c.HasField("meta") else None) for c in response.model),
        max_total_bytes=max_model_bytes))
    return TasksReply(
        status=status,
        round_number=response.round_number,
        tasks=tuple(task_from_pb(t) for t in response.tasks),
        reason=response.reason,
        model=model,
    )


MAX_ALSO_RESULTS = 16


def result_to_pb(result: TaskResult) -> pb.ResultMeta:
    return pb.ResultMeta(
        collaborator=result.key.collaborator,
        round_number=result.key.round_number,
        task_name=result.key.task_name,
        data_size=result.data_size,
        metrics=dict(result.metrics),
        also=[result_to_pb(extra) for extra in result.also],
    )


MAX_METRICS = 256
MAX_METRIC_NAME_CHARS = 128
MAX_DATA_SIZE = 2**53


def result_from_pb(meta: pb.ResultMeta, *, nested: bool = False) -> TaskResult:
    """The result's metadata (and that of the results sent along with it), checked against
    the bounds of the module docstring."""
    if not meta.task_name:
        raise ProtocolError("result without a task name")
    if meta.also and nested:
        raise ProtocolError("results sent along with a result cannot carry more results")
    if len(meta.also) > MAX_ALSO_RESULTS:
        raise ProtocolError(f"at most {MAX_ALSO_RESULTS + 1} results per upload "
                            f"(got {len(meta.also) + 1})")
    if not 0 <= meta.data_size < MAX_DATA_SIZE:
        raise ProtocolError(f"result data_size {meta.data_size} is outside [0, 2**53)")
    if len(meta.metrics) > MAX_METRICS:
        raise ProtocolError(f"result has {len(meta.metrics)} metrics, more than {MAX_METRICS}")
    metrics = dict(meta.metrics)
    for name, value in metrics.items():
        if not name or len(name) > MAX_METRIC_NAME_CHARS:
            raise ProtocolError(
                f"metric name {name[:40]!r}{'...' if len(name) > 40 else ''} must have 1 to "
                f"{MAX_METRIC_NAME_CHARS} characters (has {len(name)})"
            )
        if not math.isfinite(value):
            raise ProtocolError(f"metric {name!r} is {value}, not a finite number")
    return TaskResult(
        key=ResultKey(meta.collaborator, meta.round_number, meta.task_name),
        data_size=meta.data_size,
        metrics=metrics,
        also=tuple(result_from_pb(extra, nested=True) for extra in meta.also),
    )


def ack_to_pb(ack: ResultAck, header: base_pb2.MessageHeader) -> pb.SendLocalTaskResultsResponse:
    return pb.SendLocalTaskResultsResponse(
        header=header, accepted=ack.accepted, duplicate=ack.duplicate, message=ack.message
    )


def ack_from_pb(response: pb.SendLocalTaskResultsResponse) -> ResultAck:
    return ResultAck(
        accepted=response.accepted, duplicate=response.duplicate, message=response.message
    )


def handshake_to_pb(reply: HandshakeReply, header: base_pb2.MessageHeader) -> pb.HandshakeResponse:
    return pb.HandshakeResponse(
        header=header,
        round_number=reply.round_number,
        rounds_total=reply.rounds_total,
        done=reply.done,
        failed=reply.failed,
    )


def handshake_from_pb(response: pb.HandshakeResponse) -> HandshakeReply:
    return HandshakeReply(
        round_number=response.round_number, rounds_total=response.rounds_total,
        done=response.done, failed=response.failed,
    )


def heartbeat_to_pb(reply: HeartbeatReply, header: base_pb2.MessageHeader) -> pb.HeartbeatResponse:
    return pb.HeartbeatResponse(header=header, round_number=reply.round_number, done=reply.done,
                                failed=reply.failed)


def heartbeat_from_pb(response: pb.HeartbeatResponse) -> HeartbeatReply:
    return HeartbeatReply(round_number=response.round_number, done=response.done,
                          failed=response.failed)


def status_to_json(status: Mapping[str, object]) -> str:
    return json.dumps(status, sort_keys=True, default=str)
