"""director.proto messages <-> the plain messages of ``core.experiments``, both directions.

Parsing never trusts the peer: an unknown enum value, a contract that is not a JSON object or an
unsafe file name is a ``ProtocolError`` (INVALID_ARGUMENT on the server, refused on the client).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, TypeVar

from openfl_like.core.errors import ProtocolError
from openfl_like.core.experiments import (
    Broadcast,
    BroadcastKind,
    EnvoyAssignment,
    EventKind,
    ExperimentEvent,
    ExperimentKind,
    FeedbackItem,
    ShardInfo,
)
from openfl_like.protocol import base_pb2
from openfl_like.protocol import director_pb2 as pb

MAX_FILE_NAME = 128
E = TypeVar("E", bound=enum.Enum)

# FeedbackItem.kind on the wire ("log" / "scalars") and in core (EventKind.LOG / METRICS)
_FEEDBACK_KINDS = {EventKind.LOG: "log", EventKind.METRICS: "scalars"}
_FEEDBACK_FROM_WIRE = {wire: kind for kind, wire in _FEEDBACK_KINDS.items()}


def check_file_name(name: str) -> str:
    """``name`` if it is a plain file name (no folders, no '..', no NUL, 1-128 characters)."""
    if (
        not name or len(name) > MAX_FILE_NAME or "/" in name or "\\" in name or ".." in name
        or "\x00" in name or name in (".", "..") or PurePath(name).name != name
    ):
        raise ProtocolError(
            f"unsafe file name {name[:MAX_FILE_NAME]!r}: a plain name of 1-{MAX_FILE_NAME} "
            "characters is required (no '/', '\\', '..' or NUL)"
        )
    return name


def parse_enum(cls: type[E], value: str, what: str) -> E:
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(str(m.value) for m in cls)
        raise ProtocolError(f"{what}: unknown value {value!r} (expected one of: {known})") from None


def experiment_kind(value: str) -> ExperimentKind:
    return parse_enum(ExperimentKind, value, "submission kind")


# -- JSON documents --------------------------------------------------------------------------


def _jsonable(value: object) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, (PurePath, enum.Enum)):
        return str(value.value if isinstance(value, enum.Enum) else value)
    raise TypeError(f"{type(value).__name__} is not JSON-able")


def to_json(document: Mapping[str, Any]) -> str:
    """A handler's descriptive reply as canonical JSON (keys sorted)."""
    return json.dumps(dict(document), sort_keys=True, default=_jsonable)


def from_json(text: str, what: str) -> dict[str, Any]:
    """A JSON object from the peer; ProtocolError for anything else."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"{what}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


# -- envoy messages --------------------------------------------------------------------------


def shard_to_pb(shard: ShardInfo) -> pb.ShardInfo:
    return pb.ShardInfo(
        contract_json=to_json(shard.contract),
        sample_counts={str(k): int(v) for k, v in shard.sample_counts.items()},
        description=shard.description,
    )


def shard_from_pb(message: pb.ShardInfo) -> ShardInfo:
    return ShardInfo(
        contract=from_json(message.contract_json, "shard contract"),
        sample_counts=dict(message.sample_counts),
        description=message.description,
    )


def assignment_to_pb(
    assignment: EnvoyAssignment, header: base_pb2.MessageHeader
) -> pb.WaitExperimentResponse:
    return pb.WaitExperimentResponse(
        header=header,
        experiment_name=assignment.experiment,
        messages=[
            pb.BroadcastMessage(id=m.id, kind=BroadcastKind(m.kind).value,
                                experiment=m.experiment, text=m.text)
            for m in assignment.messages
        ],
    )


def assignment_from_pb(message: pb.WaitExperimentResponse) -> EnvoyAssignment:
    return EnvoyAssignment(
        experiment=message.experiment_name,
        messages=tuple(
            Broadcast(id=m.id, kind=parse_enum(BroadcastKind, m.kind, "broadcast kind"),
                      experiment=m.experiment, text=m.text)
            for m in message.messages
        ),
    )


def feedback_item_to_pb(item: FeedbackItem) -> pb.FeedbackItem:
    kind = _FEEDBACK_KINDS.get(EventKind(item.kind))
    if kind is None:
        raise ProtocolError(f"feedback item {item.seq}: kind {item.kind} cannot be sent")
    return pb.FeedbackItem(
        seq=item.seq, time=item.time, kind=kind, text=item.text,
        round_number=item.round_number, task=item.task, scalars=dict(item.scalars),
    )


def feedback_item_from_pb(message: pb.FeedbackItem, *, max_text_bytes: int) -> FeedbackItem:
    """The item, its text cut to ``max_text_bytes`` (UTF-8) so one line cannot be huge."""
    kind = _FEEDBACK_FROM_WIRE.get(message.kind)
    if kind is None:
        raise ProtocolError(f"feedback item {message.seq}: unknown kind {message.kind!r}")
    if message.seq < 1:
        raise ProtocolError(f"feedback item sequence numbers start at 1, got {message.seq}")
    return FeedbackItem(
        seq=message.seq, time=message.time, kind=kind,
        text=truncate_utf8(message.text, max_text_bytes),
        round_number=message.round_number, task=truncate_utf8(message.task, max_text_bytes),
        scalars=dict(message.scalars),
    )


def truncate_utf8(text: str, max_bytes: int) -> str:
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes].decode(errors="ignore")


# -- experimenter messages -------------------------------------------------------------------


def event_to_pb(
    event: ExperimentEvent, header: base_pb2.MessageHeader | None = None
) -> pb.ExperimentEvent:
    return pb.ExperimentEvent(
        header=header, seq=event.seq, time=event.time, kind=EventKind(event.kind).value,
        source=event.source, round_number=event.round_number, task=event.task,
        metrics=dict(event.metrics), text=event.text,
    )


def event_from_pb(message: pb.ExperimentEvent) -> ExperimentEvent:
    return ExperimentEvent(
        seq=message.seq, time=message.time,
        kind=parse_enum(EventKind, message.kind, "event kind"), source=message.source,
        round_number=message.round_number, task=message.task, metrics=dict(message.metrics),
        text=message.text,
    )
