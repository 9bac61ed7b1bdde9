"""The VerticalPeer service's methods (``vertical.proto``) and the tensor messages' wire bytes.

Built like :mod:`.service` (the aggregator's table; a test checks this one against the proto).
Every request reaches the server as raw bytes and is parsed by the servicer after the caller's
certificate was checked (the reason is in :mod:`.service`'s docstring): garbage becomes
INVALID_ARGUMENT with a reason and leaves nothing behind.

The two tensor messages (``TensorPut``, ``TensorPiece``) are encoded and decoded by hand,
byte-for-byte as protobuf does (a test compares with the generated classes), as
:mod:`.wire` does for the aggregator's streams: the sender copies the tensor's bytes once, into
the message; the receiver wraps a large ``TensorPut``'s bytes without copying them
(``np.frombuffer`` over the received message) and copies a ``TensorPiece``'s once, into the
tensor's buffer. A small ``TensorPut`` (at most ``SMALL_PUT_BYTES``: the per-step fast path) is
parsed by the generated class instead: its C parser takes ~1 us where ours takes ~6, and the
one copy of its few bytes costs less than that difference.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from openfl_like.core.errors import ProtocolError
from openfl_like.protocol import base_pb2
from openfl_like.protocol import vertical_pb2 as pb
from openfl_like.protocol.chunking import Chunk
from openfl_like.protocol.service import STREAM_UNARY, Rpc, message_rpc

# the generated-format primitives, shared with the aggregator's stream encoding
from openfl_like.protocol.wire import _decode_chunk, _fields, _key, _Malformed, _varint

VERTICAL_SERVICE = "openfl_like.v1.VerticalPeer"


def _identity(data: bytes) -> bytes:
    return data


def _rpc(name: str, request: object) -> Rpc:
    return message_rpc(name, request, pb.PeerReply, service=VERTICAL_SERVICE)


VERTICAL_RPCS: dict[str, Rpc] = {
    rpc.name: rpc
    for rpc in (
        _rpc("Connect", pb.ConnectRequest),
        # tensor messages: the client sends bytes of encode_put/encode_piece; the server
        # parses them with decode_put/decode_piece after the certificate check
        Rpc("PutTensor", "unary_unary", _identity, _identity,
            pb.PeerReply.SerializeToString, pb.PeerReply.FromString,
            service=VERTICAL_SERVICE),
        Rpc("StreamTensor", STREAM_UNARY, _identity, _identity,
            pb.PeerReply.SerializeToString, pb.PeerReply.FromString,
            service=VERTICAL_SERVICE),
        _rpc("PutControl", pb.ControlMessage),
    )
}  # fmt: skip

# field numbers, as in vertical.proto / base.proto
_HEADER = 1
_PUT_META, _PUT_DATA = 2, 3
_PIECE_CHUNK = 2
_CHUNK_META, _CHUNK_DATA = 1, 2


@dataclass(frozen=True)
class TensorMessage:
    """A decoded ``TensorPut`` or ``TensorPiece``: header and meta when present, and the bytes
    (a view into the received message)."""

    header: pb.PeerHeader | None
    meta: base_pb2.TensorMeta | None
    data: memoryview | bytes

    @property
    def chunk(self) -> Chunk:
        return Chunk(self.data, self.meta)


def _field(number: int, payload: bytes | memoryview) -> list[bytes | memoryview]:
    return [_key(number), _varint(len(payload)), payload]


_HEADER_KEY, _PUT_META_KEY, _PUT_DATA_KEY = _key(_HEADER), _key(_PUT_META), _key(_PUT_DATA)
_META_NAME, _META_ROUND = 1, 2
_ROUND_KEY = _varint(_META_ROUND << 3)  # varint wire type


@functools.lru_cache(maxsize=1024)
def _meta_tail(dtype: str, shape: tuple[int, ...], nbytes: int) -> bytes:
    return base_pb2.TensorMeta(dtype=dtype, shape=shape, nbytes=nbytes).SerializeToString()


def encode_meta(name: str, step: int, dtype: str, shape: tuple[int, ...], nbytes: int) -> bytes:
    """Serialized ``TensorMeta`` (no tags), as protobuf writes it: fields in number order, so
    the part that depends on dtype and shape alone is made once per layout and reused (the
    per-step fast path sends the same layout every step)."""
    head = b"".join(_field(_META_NAME, name.encode())) if name else b""
    if step:
        head += _ROUND_KEY + _varint(step if step > 0 else step + (1 << 64))
    return head + _meta_tail(dtype, shape, nbytes)


def encode_put(header: bytes, meta: bytes, data: bytes | memoryview) -> bytes:
    """Wire bytes of a ``TensorPut`` (``header``, ``meta``: a serialized PeerHeader and
    TensorMeta)."""
    parts = [_HEADER_KEY, _varint(len(header)), header, _PUT_META_KEY, _varint(len(meta)), meta]
    if len(data):
        parts += [_PUT_DATA_KEY, _varint(len(data)), data]
    return b"".join(parts)  # the one copy of the tensor's bytes on the sending side


def encode_piece(header: bytes | None, meta: bytes | None, data: bytes | memoryview) -> bytes:
    """Wire bytes of a ``TensorPiece`` (header and meta, serialized, on the first piece only)."""
    inner: list[bytes | memoryview] = []
    if meta is not None:
        inner += _field(_CHUNK_META, meta)
    if len(data):
        inner += _field(_CHUNK_DATA, data)
    parts: list[bytes | memoryview] = _field(_HEADER, header) if header is not None else []
    parts += [_key(_PIECE_CHUNK), _varint(sum(len(p) for p in inner)), *inner]
    return b"".join(parts)


def _decode(raw: bytes, what: str, *, piece: bool) -> TensorMessage:
    header: pb.PeerHeader | None = None
    meta: base_pb2.TensorMeta | None = None
    data: memoryview | bytes = b""
    try:
        for number, payload in _fields(memoryview(raw)):
            if payload is None:
                continue
            if number == _HEADER:
                header = pb.PeerHeader.FromString(bytes(payload))
            elif piece and number == _PIECE_CHUNK:
                chunk = _decode_chunk(payload)  # the aggregator streams' decoder
                meta, data = chunk.meta, chunk.data
            elif not piece and number == _PUT_META:
                meta = base_pb2.TensorMeta.FromString(bytes(payload))
            elif not piece and number == _PUT_DATA:
                data = payload
    except (_Malformed, DecodeError) as exc:
        raise ProtocolError(f"{what}: malformed request ({exc})") from None
    return TensorMessage(header, meta, data)


SMALL_PUT_BYTES = 64 * 1024


def decode_put(raw: bytes) -> TensorMessage:
    """Parse a ``TensorPut``; ProtocolError (INVALID_ARGUMENT) when malformed."""
    if len(raw) > SMALL_PUT_BYTES:
        return _decode(raw, "PutTensor", piece=False)
    try:
        message = pb.TensorPut.FromString(raw)
    except DecodeError as exc:
        raise ProtocolError(f"PutTensor: malformed request ({exc})") from None
    return TensorMessage(message.header if message.HasField("header") else None,
                         message.meta if message.HasField("meta") else None, message.data)


def decode_piece(raw: bytes) -> TensorMessage:
    """Parse a ``TensorPiece``; ProtocolError (INVALID_ARGUMENT) when malformed."""
    return _decode(raw, "StreamTensor", piece=True)
