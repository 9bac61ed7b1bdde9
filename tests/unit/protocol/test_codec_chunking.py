"""Round trips of the tensor codec, the chunk stream and the hand-written wire encoding."""

from __future__ import annotations

import numpy as np
import pytest

from openfl_like.core.errors import ProtocolError, ResourceLimitError
from openfl_like.core.messages import NamedTensor
from openfl_like.protocol import aggregator_pb2, base_pb2, codec, wire
from openfl_like.protocol.chunking import (
    Chunk,
    TensorJoiner,
    join_tensors,
    pack_chunks,
    split_tensors,
)

DTYPES = ["bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128"]  # fmt: skip


def _array(dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 255, size=int(np.prod(shape)) * np.dtype(dtype).itemsize, dtype=np.uint8)
    array = raw.view(dtype).reshape(shape)
    return array if dtype != "bool" else array.astype(bool)


def _round_trip(tensors: list[NamedTensor], chunk_size: int = 7) -> list[NamedTensor]:
    return list(join_tensors(split_tensors(tensors, chunk_size)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (4, 3, 2)])
def test_every_dtype_and_shape_round_trips_exactly(dtype: str, shape: tuple[int, ...]) -> None:
    array = _array(dtype, shape)
    (out,) = _round_trip([NamedTensor("t", array, 4, ("aggregated",))])
    assert out.array.dtype == array.dtype and out.array.shape == array.shape
    assert out.array.tobytes() == array.tobytes()  # bit-exact, NaN patterns included
    assert (out.name, out.round_number, out.tags) == ("t", 4, ("aggregated",))


def test_non_contiguous_and_big_endian_input() -> None:
    base = np.arange(24, dtype=">f8").reshape(4, 6)
    strided = base[::2, ::3]
    (out,) = _round_trip([NamedTensor("t", strided)])
    assert out.array.dtype == np.dtype("<f8")
    assert np.array_equal(out.array, strided)


def test_bfloat16_round_trips_as_its_raw_bits() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    array = np.array([1.0, -2.5, 3.25e10], dtype=ml_dtypes.bfloat16)
    (out,) = _round_trip([NamedTensor("b", array)])
    assert codec.dtype_name(out.array.dtype) == "bfloat16"
    assert out.array.view(np.uint16).tolist() == array.view(np.uint16).tolist()


def test_raw_v2_is_sent_as_bfloat16() -> None:
    raw = np.array([0x3F80, 0xC020], dtype=np.uint16).view("V2")
    layout, view = codec.TensorLayout.of(NamedTensor("b", raw))
    assert layout.dtype_name == "bfloat16" and bytes(view) == raw.tobytes()


def test_unsupported_dtype_is_refused() -> None:
    with pytest.raises(ProtocolError, match="cannot be sent"):
        list(split_tensors([NamedTensor("s", np.array(["a"], dtype=object))], 4))
    with pytest.raises(ProtocolError, match="unknown dtype"):
        codec.dtype_from_name("pickle")


def test_decoded_arrays_share_the_received_buffer() -> None:
    (out,) = _round_trip([NamedTensor("t", np.arange(100, dtype=np.int32))], chunk_size=64)
    assert out.array.base is not None and out.array.flags.writeable


def test_many_tensors_yielded_one_at_a_time() -> None:
    tensors = [NamedTensor(f"t{i}", np.full(10, i, dtype=np.int16)) for i in range(5)]
    chunks = list(split_tensors(tensors, 8))
    joiner = TensorJoiner()
    completed = [joiner.feed(c) for c in chunks]
    done = [t for t in completed if t is not None]
    assert [t.name for t in done] == [f"t{i}" for i in range(5)]
    assert sum(c.meta is not None for c in chunks) == 5
    assert max(len(c.data) for c in chunks) <= 8


def test_truncated_and_mismatched_streams() -> None:
    meta = base_pb2.TensorMeta(name="w", dtype="float32", shape=[2, 2], nbytes=16)
    with pytest.raises(ProtocolError, match="truncated"):
        list(join_tensors([Chunk(b"\0" * 8, meta)]))
    with pytest.raises(ProtocolError, match="truncated"):
        list(join_tensors([Chunk(b"\0" * 8, meta), Chunk(b"\0" * 16, meta)]))
    with pytest.raises(ProtocolError, match="more bytes"):
        list(join_tensors([Chunk(b"\0" * 20, meta)]))
    with pytest.raises(ProtocolError, match="before the tensor's metadata"):
        list(join_tensors([Chunk(b"\0" * 4)]))
    bad = base_pb2.TensorMeta(name="w", dtype="float32", shape=[2, 2], nbytes=12)
    with pytest.raises(ProtocolError, match="do not match"):
        list(join_tensors([Chunk(b"\0" * 12, bad)]))


def test_limits() -> None:
    meta = base_pb2.TensorMeta(name="w", dtype="uint8", shape=[100], nbytes=100)
    with pytest.raises(ResourceLimitError):
        list(join_tensors([Chunk(b"\0" * 100, meta)], max_tensor_bytes=99))
    with pytest.raises(ResourceLimitError):
        list(join_tensors([Chunk(b"\0" * 100, meta)] * 2, max_total_bytes=150))


def test_wire_encoding_is_byte_identical_to_protobuf() -> None:
    header = base_pb2.MessageHeader(sender="a", receiver="b", federation_uuid="f")
    result = aggregator_pb2.ResultMeta(collaborator="a", round_number=2, task_name="t",
                                       metrics={"loss": 0.5})  # fmt: skip
    tensors = [NamedTensor("x", np.arange(300, dtype=np.float64)), NamedTensor("e", np.zeros(0))]
    for index, chunk in enumerate(split_tensors(tensors, 1000)):
        pb_chunk = base_pb2.TensorChunk(meta=chunk.meta, data=bytes(chunk.data))
        first = index == 0
        down = wire.Frame(header=header if first else None, chunk=chunk)
        expected = aggregator_pb2.GetAggregatedTensorsResponse(chunk=[pb_chunk])
        if first:
            expected.header.CopyFrom(header)
        assert wire.encode_download(down) == expected.SerializeToString()
        up = wire.Frame(header=header if first else None, result=result if first else None,
                        chunk=chunk)  # fmt: skip
        expected_up = aggregator_pb2.SendLocalTaskResultsRequest(chunk=[pb_chunk])
        if first:
            expected_up.header.CopyFrom(header)
            expected_up.result.CopyFrom(result)
        encoded = wire.encode_upload(up)
        assert encoded == expected_up.SerializeToString()
        decoded = wire.decode_upload(encoded)
        assert decoded.header == up.header and decoded.result == up.result
        assert decoded.chunk is not None and bytes(decoded.chunk.data) == bytes(chunk.data)
        assert decoded.chunk.meta == chunk.meta


def test_small_tensors_share_messages_and_round_trip_through_protobuf() -> None:
    # Prepare: 5 small tensors and one larger than the budget.
    tensors = [NamedTensor(f"t{i}", np.full(10, i, np.float32)) for i in range(5)]
    tensors.append(NamedTensor("big", np.arange(100, dtype=np.float64)))
    chunks = list(split_tensors(tensors, 400))
    # Execute
    groups = list(pack_chunks(chunks, 400))
    # Assert: the five 40-byte tensors share the first message; no message over the budget
    # unless it is one chunk; every chunk kept, in order.
    assert len(groups[0]) >= 5 and len(groups) < len(chunks)
    assert all(sum(len(c.data) for c in g) <= 400 or len(g) == 1 for g in groups)
    assert [c for g in groups for c in g] == chunks
    header = base_pb2.MessageHeader(sender="a", receiver="b", federation_uuid="f")
    encoded = wire.encode_download(wire.Frame.of(groups[0], header=header))
    parsed = aggregator_pb2.GetAggregatedTensorsResponse.FromString(encoded)
    assert [bytes(c.data) for c in parsed.chunk] == [bytes(c.data) for c in groups[0]]
    decoded = wire.decode_download(encoded)
    assert [bytes(c.data) for c in decoded.chunks] == [bytes(c.data) for c in groups[0]]
    assert [c.meta for c in decoded.chunks] == [c.meta for c in groups[0]]
    joined = [t.name for t in join_tensors(c for g in groups for c in g)]
    assert joined == ["t0", "t1", "t2", "t3", "t4", "big"]


def test_wire_decodes_what_protobuf_encodes_including_unknown_fields() -> None:
    message = aggregator_pb2.GetAggregatedTensorsResponse(
        header=base_pb2.MessageHeader(sender="s"),
        chunk=[base_pb2.TensorChunk(data=b"abc")],
    ).SerializeToString() + b"\x78\x05"  # an unknown varint field 15 from a newer peer
    frame = wire.decode_download(message)
    assert frame.header is not None and frame.header.sender == "s"
    assert frame.chunk is not None and bytes(frame.chunk.data) == b"abc" and not frame.error


@pytest.mark.parametrize("garbage", [b"\x12\x80", b"\x12\x05ab", b"\x0f", b"\x0a\x02\xff\xff"])
def test_wire_reports_malformed_messages_instead_of_raising(garbage: bytes) -> None:
    assert wire.decode_download(garbage).error
