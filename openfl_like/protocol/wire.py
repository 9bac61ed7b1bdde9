"""Zero-copy protobuf encoding of the two tensor-streaming messages (the transfer hot path).

``GetAggregatedTensorsResponse`` and ``SendLocalTaskResultsRequest`` carry megabytes of tensor
bytes each. Through the generated classes every chunk would be copied four times on receipt
(grpc -> bytes, parse, ``.data`` access, into the tensor buffer) and three times on sending. Here
they are encoded and decoded by hand, byte-for-byte as protobuf does (tests compare with the
generated classes), so the payload is copied once on each side in Python: into the outgoing
message, and from the received message into the tensor's buffer. Small parts (header, result
metadata, tensor metadata) still go through the generated classes.

Decoding never raises: grpc would turn a deserializer exception into a bare INTERNAL status, so a
malformed message becomes a :class:`Frame` with ``error`` set, which the servicer reports as
INVALID_ARGUMENT with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from openfl_like.protocol import aggregator_pb2, base_pb2
from openfl_like.protocol.chunking import Chunk

_LEN = 2  # protobuf wire type of strings, bytes and sub-messages


@dataclass(frozen=True)
class Frame:
    """One message of a tensor stream: optional header/result (first message), then any number
    of chunks (``chunk`` and ``more``: the repeated chunk field, in order)."""

    header: base_pb2.MessageHeader | None = None
    result: aggregator_pb2.ResultMeta | None = None
    chunk: Chunk | None = None
    error: str = ""
    more: tuple[Chunk, ...] = ()

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        return ((self.chunk,) if self.chunk is not None else ()) + self.more

    @classmethod
    def of(cls, chunks: list[Chunk], *, header: base_pb2.MessageHeader | None = None,
           result: aggregator_pb2.ResultMeta | None = None) -> Frame:
        return cls(header=header, result=result, chunk=chunks[0] if chunks else None,
                   more=tuple(chunks[1:]))


# field numbers, as in aggregator.proto / base.proto
_DOWNLOAD_HEADER, _DOWNLOAD_CHUNK = 1, 2
_UPLOAD_HEADER, _UPLOAD_RESULT, _UPLOAD_CHUNK = 1, 2, 3
_CHUNK_META, _CHUNK_DATA = 1, 2


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_ONE_BYTE = tuple(bytes((value,)) for value in range(0x80))


def _key(field: int) -> bytes:
    return _varint((field << 3) | _LEN)


def _chunk_parts(chunk: Chunk) -> list[bytes | memoryview]:
    parts: list[bytes | memoryview] = []
    if chunk.meta is not None:
        meta = chunk.meta.SerializeToString()
        parts += [_key(_CHUNK_META), _varint(len(meta)), meta]
    if len(chunk.data):
        parts += [_key(_CHUNK_DATA), _varint(len(chunk.data)), chunk.data]
    return parts


def _encode(fields: list[tuple[int, bytes | None]], chunk_field: int,
            chunks: tuple[Chunk, ...]) -> bytes:
    parts: list[bytes | memoryview] = []
    for field, payload in fields:
        if payload is not None:
            parts += [_key(field), _varint(len(payload)), payload]
    for chunk in chunks:
        inner = _chunk_parts(chunk)
        size = sum(len(p) for p in inner)
        parts += [_key(chunk_field), _varint(size), *inner]
    return b"".join(parts)  # the one copy of the payload on the sending side


def _serialized(message: base_pb2.MessageHeader | aggregator_pb2.ResultMeta | None) -> bytes | None:
    return None if message is None else message.SerializeToString()


def encode_download(frame: Frame) -> bytes:
    """Wire bytes of a ``GetAggregatedTensorsResponse``."""
    return _encode([(_DOWNLOAD_HEADER, _serialized(frame.header))], _DOWNLOAD_CHUNK,
                   frame.chunks)


def encode_upload(frame: Frame) -> bytes:
    """Wire bytes of a ``SendLocalTaskResultsRequest``."""
    fields = [
        (_UPLOAD_HEADER, _serialized(frame.header)),
        (_UPLOAD_RESULT, _serialized(frame.result)),
    ]
    return _encode(fields, _UPLOAD_CHUNK, frame.chunks)


class _Malformed(Exception):
    pass


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, memoryview | None]]:
    """(field number, payload view) for LEN fields; (field, None) for skipped scalar fields."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == _LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise _Malformed(f"field {field} runs past the end of the message")
            yield field, buf[pos : pos + size]
            pos += size
        elif wire_type == 0:
            _, pos = _read_varint(buf, pos)
            yield field, None
        elif wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
            if pos > len(buf):
                raise _Malformed(f"field {field} runs past the end of the message")
            yield field, None
        else:
            raise _Malformed(f"unsupported wire type {wire_type}")


def _decode_chunk(buf: memoryview) -> Chunk:
    meta: base_pb2.TensorMeta | None = None
    data: memoryview | bytes = b""
    for field, payload in _fields(buf):
        if payload is None:
            continue
        if field == _CHUNK_META:
            meta = base_pb2.TensorMeta.FromString(bytes(payload))
        elif field == _CHUNK_DATA:
            data = payload  # a view into the received message: no copy
    return Chunk(data, meta)


def _decode(data: bytes, header_field: int, result_field: int, chunk_field: int) -> Frame:
    header = result = None
    chunks: list[Chunk] = []
    try:
        for field, payload in _fields(memoryview(data)):
            if payload is None:
                continue
            if field == header_field:
                header = base_pb2.MessageHeader.FromString(bytes(payload))
            elif field == result_field:
                result = aggregator_pb2.ResultMeta.FromString(bytes(payload))
            elif field == chunk_field:
                chunks.append(_decode_chunk(payload))
    except (_Malformed, DecodeError) as exc:
        return Frame(error=f"malformed stream message: {exc}")
    return Frame.of(chunks, header=header, result=result)


def decode_download(data: bytes) -> Frame:
    """Parse a ``GetAggregatedTensorsResponse`` (chunk bytes stay views into ``data``)."""
    return _decode(data, _DOWNLOAD_HEADER, -1, _DOWNLOAD_CHUNK)


def decode_upload(data: bytes) -> Frame:
    """Parse a ``SendLocalTaskResultsRequest`` (chunk bytes stay views into ``data``)."""
    return _decode(data, _UPLOAD_HEADER, _UPLOAD_RESULT, _UPLOAD_CHUNK)
