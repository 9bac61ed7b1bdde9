from openfl_like.protocol import base_pb2 as _base_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShardInfo(_message.Message):
    __slots__ = ("contract_json", "sample_counts", "description")
    class SampleCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CONTRACT_JSON_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    contract_json: str
    sample_counts: _containers.ScalarMap[str, int]
    description: str
    def __init__(self, contract_json: _Optional[str] = ..., sample_counts: _Optional[_Mapping[str, int]] = ..., description: _Optional[str] = ...) -> None: ...

class UpdateShardInfoRequest(_message.Message):
    __slots__ = ("header", "shard")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    shard: ShardInfo
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., shard: _Optional[_Union[ShardInfo, _Mapping]] = ...) -> None: ...

class UpdateShardInfoResponse(_message.Message):
    __slots__ = ("header", "accepted", "message")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    accepted: bool
    message: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class UpdateEnvoyStatusRequest(_message.Message):
    __slots__ = ("header", "running", "awaiting_approval")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    AWAITING_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    running: _containers.RepeatedScalarFieldContainer[str]
    awaiting_approval: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., running: _Optional[_Iterable[str]] = ..., awaiting_approval: _Optional[_Iterable[str]] = ...) -> None: ...

class UpdateEnvoyStatusResponse(_message.Message):
    __slots__ = ("header", "heartbeat_seconds")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    heartbeat_seconds: float
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., heartbeat_seconds: _Optional[float] = ...) -> None: ...

class WaitExperimentRequest(_message.Message):
    __slots__ = ("header", "wait_seconds")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    wait_seconds: float
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class BroadcastMessage(_message.Message):
    __slots__ = ("id", "kind", "experiment", "text")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    experiment: str
    text: str
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., experiment: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class WaitExperimentResponse(_message.Message):
    __slots__ = ("header", "experiment_name", "messages")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    experiment_name: str
    messages: _containers.RepeatedCompositeFieldContainer[BroadcastMessage]
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., experiment_name: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[BroadcastMessage, _Mapping]]] = ...) -> None: ...

class GetExperimentDataRequest(_message.Message):
    __slots__ = ("header", "experiment_name")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    experiment_name: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., experiment_name: _Optional[str] = ...) -> None: ...

class PackageChunk(_message.Message):
    __slots__ = ("header", "path", "size", "sha256", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    path: str
    size: int
    sha256: str
    data: bytes
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class SetExperimentFailedRequest(_message.Message):
    __slots__ = ("header", "experiment_name", "error_code", "error_description", "last_log_lines")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LAST_LOG_LINES_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    experiment_name: str
    error_code: int
    error_description: str
    last_log_lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., experiment_name: _Optional[str] = ..., error_code: _Optional[int] = ..., error_description: _Optional[str] = ..., last_log_lines: _Optional[_Iterable[str]] = ...) -> None: ...

class SetExperimentFailedResponse(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ...) -> None: ...

class FeedbackItem(_message.Message):
    __slots__ = ("seq", "time", "kind", "text", "round_number", "task", "scalars")
    class ScalarsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SCALARS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: float
    kind: str
    text: str
    round_number: int
    task: str
    scalars: _containers.ScalarMap[str, float]
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[float] = ..., kind: _Optional[str] = ..., text: _Optional[str] = ..., round_number: _Optional[int] = ..., task: _Optional[str] = ..., scalars: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ExperimentFeedback(_message.Message):
    __slots__ = ("header", "experiment_name", "items")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    experiment_name: str
    items: _containers.RepeatedCompositeFieldContainer[FeedbackItem]
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., experiment_name: _Optional[str] = ..., items: _Optional[_Iterable[_Union[FeedbackItem, _Mapping]]] = ...) -> None: ...

class ExperimentFeedbackResponse(_message.Message):
    __slots__ = ("header", "last_seq")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    last_seq: int
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., last_seq: _Optional[int] = ...) -> None: ...

class ExperimentSubmission(_message.Message):
    __slots__ = ("name", "kind", "total_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    total_size: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., total_size: _Optional[int] = ...) -> None: ...

class SetNewExperimentRequest(_message.Message):
    __slots__ = ("header", "submission", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SUBMISSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    submission: ExperimentSubmission
    chunk: PackageChunk
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., submission: _Optional[_Union[ExperimentSubmission, _Mapping]] = ..., chunk: _Optional[_Union[PackageChunk, _Mapping]] = ...) -> None: ...

class SetNewExperimentResponse(_message.Message):
    __slots__ = ("header", "accepted", "experiment_name", "message")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    accepted: bool
    experiment_name: str
    message: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., accepted: _Optional[bool] = ..., experiment_name: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ExperimentRequest(_message.Message):
    __slots__ = ("header", "experiment_name", "reason")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    experiment_name: str
    reason: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., experiment_name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class JsonResponse(_message.Message):
    __slots__ = ("header", "json")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    json: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., json: _Optional[str] = ...) -> None: ...

class GetMetricStreamRequest(_message.Message):
    __slots__ = ("header", "experiment_name", "from_seq")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    experiment_name: str
    from_seq: int
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., experiment_name: _Optional[str] = ..., from_seq: _Optional[int] = ...) -> None: ...

class ExperimentEvent(_message.Message):
    __slots__ = ("header", "seq", "time", "kind", "source", "round_number", "task", "metrics", "text")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    seq: int
    time: float
    kind: str
    source: str
    round_number: int
    task: str
    metrics: _containers.ScalarMap[str, float]
    text: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., seq: _Optional[int] = ..., time: _Optional[float] = ..., kind: _Optional[str] = ..., source: _Optional[str] = ..., round_number: _Optional[int] = ..., task: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., text: _Optional[str] = ...) -> None: ...

class GetTrainedModelRequest(_message.Message):
    __slots__ = ("header", "experiment_name", "which")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_NAME_FIELD_NUMBER: _ClassVar[int]
    WHICH_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    experiment_name: str
    which: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., experiment_name: _Optional[str] = ..., which: _Optional[str] = ...) -> None: ...
