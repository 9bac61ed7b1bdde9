"""The VerticalPeer table matches vertical.proto; the hand-encoded tensor messages are exactly
what protobuf makes; conversions round-trip and refuse what they cannot carry."""

from __future__ import annotations

import pytest

from openfl_like.core.errors import ProtocolError
from openfl_like.core.vertical import Control, ControlKind, Hello, PartyRole
from openfl_like.protocol import base_pb2
from openfl_like.protocol import vertical_pb2 as pb
from openfl_like.protocol.service import STREAM_UNARY, UNARY_UNARY
from openfl_like.protocol.vertical_convert import (
    control_from_pb,
    control_to_pb,
    header_pb,
    hello_from_pb,
    hello_to_pb,
)
from openfl_like.protocol.vertical_service import (
    SMALL_PUT_BYTES,
    VERTICAL_RPCS,
    VERTICAL_SERVICE,
    decode_piece,
    decode_put,
    encode_meta,
    encode_piece,
    encode_put,
)

HEADER = header_pb("shop", "bank", "s1", PartyRole.LEADER)
META = base_pb2.TensorMeta(name="emb", round_number=12, dtype="float32", shape=[2, 3],
                           nbytes=24)


def test_method_table_matches_the_proto_service() -> None:
    service = pb.DESCRIPTOR.services_by_name["VerticalPeer"]
    assert service.full_name == VERTICAL_SERVICE
    assert set(VERTICAL_RPCS) == {m.name for m in service.methods}
    for method in service.methods:
        rpc = VERTICAL_RPCS[method.name]
        assert rpc.kind == (STREAM_UNARY if method.client_streaming else UNARY_UNARY)
        assert not method.server_streaming
        assert rpc.path == f"/{service.full_name}/{method.name}"
        assert rpc.deserialize_response(pb.PeerReply(header=HEADER).SerializeToString()
                                        ).header == HEADER


@pytest.mark.parametrize("data", [b"", b"\x00" * 24, bytes(range(200)),
                                  bytes(range(256)) * 300])  # the last: over SMALL_PUT_BYTES
def test_hand_encoded_tensor_put_is_protobufs_encoding(data: bytes) -> None:
    ours = encode_put(HEADER.SerializeToString(), META.SerializeToString(), memoryview(data))
    assert ours == pb.TensorPut(header=HEADER, meta=META, data=data).SerializeToString()
    decoded = decode_put(ours)
    assert decoded.header == HEADER and decoded.meta == META and bytes(decoded.data) == data


@pytest.mark.parametrize(("header", "meta", "data"), [
    (HEADER, META, b"abc"), (None, None, b"\x01" * 300), (HEADER, META, b""), (None, None, b""),
])
def test_hand_encoded_tensor_piece_is_protobufs_encoding(header, meta, data) -> None:
    ours = encode_piece(header.SerializeToString() if header else None,
                        meta.SerializeToString() if meta else None, data)
    expected = pb.TensorPiece(chunk=base_pb2.TensorChunk(data=data))
    if header is not None:
        expected.header.CopyFrom(header)
    if meta is not None:
        expected.chunk.meta.CopyFrom(meta)
    assert pb.TensorPiece.FromString(ours) == expected
    decoded = decode_piece(ours)
    assert decoded.header == header and decoded.meta == meta and bytes(decoded.data) == data


@pytest.mark.parametrize(("name", "step", "dtype", "shape", "nbytes"), [
    ("emb", 12, "float32", (32, 64), 8192), ("", 0, "bool", (), 1), ("g", -3, "uint8", (0,), 0),
    ("w" * 300, 2**40, "float16", (3, 1, 2), 12),
])
def test_hand_encoded_meta_is_protobufs_encoding(name, step, dtype, shape, nbytes) -> None:
    expected = base_pb2.TensorMeta(name=name, round_number=step, dtype=dtype, shape=shape,
                                   nbytes=nbytes).SerializeToString()
    assert encode_meta(name, step, dtype, shape, nbytes) == expected
    assert encode_meta(name, step, dtype, shape, nbytes) == expected  # cached tail


@pytest.mark.parametrize("garbage", [b"\xff", b"\x0a\x05ab", b"\x0f", b"\x0a\x02\xff\xff"])
def test_malformed_tensor_messages_are_protocol_errors(garbage: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed request"):
        decode_put(garbage)
    with pytest.raises(ProtocolError, match="malformed request"):
        decode_piece(garbage)


def test_a_malformed_large_tensor_put_is_a_protocol_error() -> None:
    large = encode_put(HEADER.SerializeToString(), META.SerializeToString(),
                       b"\x00" * (SMALL_PUT_BYTES + 1))
    with pytest.raises(ProtocolError, match="malformed request"):
        decode_put(large[:-1])  # the data field runs past the end


def test_hello_and_control_round_trip() -> None:
    hello = Hello("s1", "shop", PartyRole.LEADER, "bank", step=5)
    assert hello_from_pb(pb.ConnectRequest.FromString(
        hello_to_pb(hello).SerializeToString())) == hello
    control = Control(3, ControlKind.READER_STATE, name="train", block_id=2, sample_index=64)
    assert control_from_pb(control_to_pb(control, HEADER)) == control


def test_control_and_role_values_are_checked() -> None:
    with pytest.raises(ProtocolError, match="unknown control kind 'reboot'"):
        control_from_pb(pb.ControlMessage(seq=1, kind="reboot"))
    with pytest.raises(ProtocolError, match="seq must be >= 1"):
        control_from_pb(pb.ControlMessage(seq=0, kind="goodbye"))
    with pytest.raises(ProtocolError, match="reason longer than"):
        control_from_pb(pb.ControlMessage(seq=1, kind="goodbye", reason="x" * 5000))
    request = hello_to_pb(Hello("s1", "shop", PartyRole.LEADER, "bank"))
    request.header.sender_role = "boss"
    with pytest.raises(ProtocolError, match="unknown sender role 'boss'"):
        hello_from_pb(request)
