from openfl_like.protocol import base_pb2 as _base_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HandshakeRequest(_message.Message):
    __slots__ = ("header", "plan_digest", "plan_fingerprint", "sample_counts", "contract_digest")
    class PlanFingerprintEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SampleCountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PLAN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PLAN_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    plan_digest: str
    plan_fingerprint: _containers.ScalarMap[str, str]
    sample_counts: _containers.ScalarMap[str, int]
    contract_digest: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., plan_digest: _Optional[str] = ..., plan_fingerprint: _Optional[_Mapping[str, str]] = ..., sample_counts: _Optional[_Mapping[str, int]] = ..., contract_digest: _Optional[str] = ...) -> None: ...

class HandshakeResponse(_message.Message):
    __slots__ = ("header", "round_number", "rounds_total", "done", "failed")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    round_number: int
    rounds_total: int
    done: bool
    failed: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., round_number: _Optional[int] = ..., rounds_total: _Optional[int] = ..., done: _Optional[bool] = ..., failed: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("header", "round_number", "done", "failed")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    round_number: int
    done: bool
    failed: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., round_number: _Optional[int] = ..., done: _Optional[bool] = ..., failed: _Optional[str] = ...) -> None: ...

class GetTasksRequest(_message.Message):
    __slots__ = ("header", "wait_seconds")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    WAIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    wait_seconds: float
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., wait_seconds: _Optional[float] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("name", "kind", "round_number", "params_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PARAMS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    round_number: int
    params_json: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., round_number: _Optional[int] = ..., params_json: _Optional[str] = ...) -> None: ...

class GetTasksResponse(_message.Message):
    __slots__ = ("header", "status", "round_number", "tasks", "reason", "model")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    status: str
    round_number: int
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    reason: str
    model: _containers.RepeatedCompositeFieldContainer[_base_pb2.TensorChunk]
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., status: _Optional[str] = ..., round_number: _Optional[int] = ..., tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., reason: _Optional[str] = ..., model: _Optional[_Iterable[_Union[_base_pb2.TensorChunk, _Mapping]]] = ...) -> None: ...

class GetAggregatedTensorsRequest(_message.Message):
    __slots__ = ("header", "round_number", "tensor_names", "tags")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TENSOR_NAMES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    round_number: int
    tensor_names: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., round_number: _Optional[int] = ..., tensor_names: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class GetAggregatedTensorsResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    chunk: _containers.RepeatedCompositeFieldContainer[_base_pb2.TensorChunk]
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., chunk: _Optional[_Iterable[_Union[_base_pb2.TensorChunk, _Mapping]]] = ...) -> None: ...

class ResultMeta(_message.Message):
    __slots__ = ("collaborator", "round_number", "task_name", "data_size", "metrics", "also")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    COLLABORATOR_FIELD_NUMBER: _ClassVar[int]
    ROUND_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_SIZE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ALSO_FIELD_NUMBER: _ClassVar[int]
    collaborator: str
    round_number: int
    task_name: str
    data_size: int
    metrics: _containers.ScalarMap[str, float]
    also: _containers.RepeatedCompositeFieldContainer[ResultMeta]
    def __init__(self, collaborator: _Optional[str] = ..., round_number: _Optional[int] = ..., task_name: _Optional[str] = ..., data_size: _Optional[int] = ..., metrics: _Optional[_Mapping[str, float]] = ..., also: _Optional[_Iterable[_Union[ResultMeta, _Mapping]]] = ...) -> None: ...

class SendLocalTaskResultsRequest(_message.Message):
    __slots__ = ("header", "result", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    result: ResultMeta
    chunk: _containers.RepeatedCompositeFieldContainer[_base_pb2.TensorChunk]
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., result: _Optional[_Union[ResultMeta, _Mapping]] = ..., chunk: _Optional[_Iterable[_Union[_base_pb2.TensorChunk, _Mapping]]] = ...) -> None: ...

class SendLocalTaskResultsResponse(_message.Message):
    __slots__ = ("header", "accepted", "duplicate", "message")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    accepted: bool
    duplicate: bool
    message: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., accepted: _Optional[bool] = ..., duplicate: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("header", "status_json")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    STATUS_JSON_FIELD_NUMBER: _ClassVar[int]
    header: _base_pb2.MessageHeader
    status_json: str
    def __init__(self, header: _Optional[_Union[_base_pb2.MessageHeader, _Mapping]] = ..., status_json: _Optional[str] = ...) -> None: ...
