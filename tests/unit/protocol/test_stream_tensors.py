"""stream_tensors: tensors handed on chunk by chunk, unjoined, with the joiner's checks."""

from __future__ import annotations

import numpy as np
import pytest

from openfl_like.core.errors import ProtocolError, ResourceLimitError
from openfl_like.core.messages import NamedTensor
from openfl_like.protocol import base_pb2
from openfl_like.protocol.chunking import Chunk, split_tensors, stream_tensors


def _meta(name: str = "w", dtype: str = "float32", shape: tuple[int, ...] = (4,),
          nbytes: int = 16) -> base_pb2.TensorMeta:
    return base_pb2.TensorMeta(name=name, dtype=dtype, shape=shape, nbytes=nbytes)


def _collect(chunks: list[Chunk], **limits: int) -> dict[str, tuple[bytes, list[int]]]:
    """Name -> (all bytes, length of each piece handed on)."""
    out: dict[str, tuple[bytes, list[int]]] = {}
    for stream in stream_tensors(chunks, **limits):
        pieces = [bytes(v) for v in stream.chunks]
        out[stream.name] = (b"".join(pieces), [len(p) for p in pieces])
    return out


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 1000])
def test_pieces_are_whole_elements_whatever_the_chunk_size(chunk_size: int) -> None:
    # Prepare: element sizes 8 and 16, chunks that split elements (except 16 and 1000)
    sent = {
        "a": np.arange(25, dtype=np.float64) / 3,
        "b": (np.arange(9) + 1j * np.arange(9)).astype(np.complex128),
        "empty": np.zeros((0, 3), np.float32),
        "z": np.array(5, dtype=np.int64),
    }
    chunks = list(split_tensors([NamedTensor(n, a) for n, a in sent.items()], chunk_size))
    # Act
    got = _collect(chunks)
    # Assert: same bytes, every piece a whole number of elements, no piece joined beyond a chunk
    assert list(got) == list(sent)
    for name, array in sent.items():
        data, lengths = got[name]
        assert data == array.tobytes()
        assert all(n % array.dtype.itemsize == 0 and n > 0 for n in lengths)
        assert all(n <= max(chunk_size, array.dtype.itemsize) for n in lengths)


def test_layout_is_given_before_any_byte() -> None:
    chunks = list(split_tensors([NamedTensor("w", np.ones((2, 3), np.float32), 4, ("t",))], 8))
    stream = next(stream_tensors(iter(chunks)))
    assert (stream.name, stream.dtype, stream.shape, stream.nbytes) == \
        ("w", np.dtype("<f4"), (2, 3), 24)
    assert (stream.round_number, stream.tags) == (4, ("t",))


def test_unread_stream_is_checked_and_skipped() -> None:
    sent = [NamedTensor("a", np.arange(10, dtype=np.float32)),
            NamedTensor("b", np.arange(3, dtype=np.int32))]
    names, b_bytes = [], b""
    for stream in stream_tensors(split_tensors(sent, 12)):
        names.append(stream.name)
        if stream.name == "b":
            b_bytes = b"".join(bytes(v) for v in stream.chunks)
    assert names == ["a", "b"] and b_bytes == sent[1].array.tobytes()
    broken = [Chunk(b"\0" * 8, _meta("a")), Chunk(b"\0" * 4, _meta("b", nbytes=4, shape=(1,)))]
    with pytest.raises(ProtocolError, match="before the next tensor began"):
        for _ in stream_tensors(broken):
            pass


@pytest.mark.parametrize(
    ("chunks", "reason"),
    [
        ([Chunk(b"\0" * 8, _meta())], "truncated"),
        ([Chunk(b"\0" * 8, _meta()), Chunk(b"\0" * 4)], "truncated"),
        ([Chunk(b"\0" * 8, _meta()), Chunk(b"\0" * 9)], "more bytes"),
        ([Chunk(b"\0" * 20, _meta())], "more bytes"),
        ([Chunk(b"\0" * 16, _meta()), Chunk(b"\0" * 4)], "before the tensor's metadata"),
        ([Chunk(b"\0" * 12, _meta(nbytes=12))], "do not match"),
        ([Chunk(b"", _meta(nbytes=0, shape=(0,))), Chunk(b"\0")], "before the tensor's metadata"),
    ],
)
def test_malformed_streams_are_refused(chunks: list[Chunk], reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        _collect(chunks)


def test_limits() -> None:
    big = [Chunk(b"\0" * 16, _meta())]
    with pytest.raises(ResourceLimitError):
        _collect(big, max_tensor_bytes=8)
    two = [Chunk(b"\0" * 16, _meta("a")), Chunk(b"\0" * 16, _meta("b"))]
    with pytest.raises(ResourceLimitError, match="limit of 20"):
        _collect(two, max_total_bytes=20)
    assert set(_collect(two, max_total_bytes=32)) == {"a", "b"}
