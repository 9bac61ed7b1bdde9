from openfl_like.protocol import base_pb2 as _base_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PeerHeader(_message.Message):
    __slots__ = ("sender", "receiver", "session_id", "sender_role")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SENDER_ROLE_FIELD_NUMBER: _ClassVar[int]
    sender: str
    receiver: str
    session_id: str
    sender_role: str
    def __init__(self, sender: _Optional[str] = ..., receiver: _Optional[str] = ..., session_id: _Optional[str] = ..., sender_role: _Optional[str] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ("header", "protocol_version", "step")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    protocol_version: int
    step: int
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., protocol_version: _Optional[int] = ..., step: _Optional[int] = ...) -> None: ...

class PeerReply(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ...) -> None: ...

class TensorPut(_message.Message):
    __slots__ = ("header", "meta", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    META_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    meta: _base_pb2.TensorMeta
    data: bytes
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., meta: _Optional[_Union[_base_pb2.TensorMeta, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TensorPiece(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    chunk: _base_pb2.TensorChunk
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., chunk: _Optional[_Union[_base_pb2.TensorChunk, _Mapping]] = ...) -> None: ...

class ControlMessage(_message.Message):
    __slots__ = ("header", "seq", "kind", "name", "version", "block_id", "sample_index", "reason")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BLOCK_ID_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    header: PeerHeader
    seq: int
    kind: str
    name: str
    version: int
    block_id: int
    sample_index: int
    reason: str
    def __init__(self, header: _Optional[_Union[PeerHeader, _Mapping]] = ..., seq: _Optional[int] = ..., kind: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., block_id: _Optional[int] = ..., sample_index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...
