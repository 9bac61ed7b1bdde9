"""Generated protobuf messages <-> the plain messages of ``core.messages``, both directions."""

from __future__ import annotations

import json
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
    return pb.GetTasksResponse(
        header=header,
        status=str(reply.status),
        round_number=reply.round_number,
        tasks=[task_to_pb(t) for t in reply.tasks],
        reason=reply.reason,
    )


def tasks_reply_from_pb(response: pb.GetTasksResponse) -> TasksReply:
    try:
        status = PollStatus(response.status)
    except ValueError:
        raise ProtocolError(f"unknown poll status {response.status!r}") from None
    return TasksReply(
        status=status,
        round_number=response.round_number,
        tasks=tuple(task_from_pb(t) for t in response.tasks),
        reason=response.reason,
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


def result_from_pb(meta: pb.ResultMeta, *, nested: bool = False) -> TaskResult:
    if not meta.task_name:
        raise ProtocolError("result without a task name")
    if meta.also and nested:
        raise ProtocolError("results sent along with a result cannot carry more results")
    if len(meta.also) > MAX_ALSO_RESULTS:
        raise ProtocolError(f"at most {MAX_ALSO_RESULTS} results per upload "
                            f"(got {len(meta.also) + 1})")
    return TaskResult(
        key=ResultKey(meta.collaborator, meta.round_number, meta.task_name),
        data_size=meta.data_size,
        metrics=dict(meta.metrics),
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
