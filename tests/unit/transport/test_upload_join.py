"""The servicer's upload joiner holds one tensor-size buffer per upload at a time."""

from __future__ import annotations

import weakref

import numpy as np

from openfl_like.core.messages import NamedTensor
from openfl_like.protocol import base_pb2
from openfl_like.protocol.chunking import TensorJoiner, split_tensors
from openfl_like.protocol.wire import Frame
from openfl_like.transport.aggregator_server import _chunks, _join


class _WatchingJoiner(TensorJoiner):
    """Notes, each time it opens a tensor's buffer, whether the last tensor is still alive."""

    def __init__(self) -> None:
        super().__init__()
        self.previous: weakref.ref[np.ndarray] | None = None
        self.alive_at_open: list[bool] = []

    def _open(self, meta: base_pb2.TensorMeta) -> None:
        if self.previous is not None:
            self.alive_at_open.append(self.previous() is not None)
        super()._open(meta)


def test_join_releases_each_tensor_before_opening_the_next() -> None:
    # Prepare: three tensors of several chunks each
    sent = {f"t{i}": np.arange(1000, dtype=np.float32) + i for i in range(3)}
    chunks = list(split_tensors([NamedTensor(n, a) for n, a in sent.items()], chunk_size=1024))
    frames = iter([Frame(chunk=c) for c in chunks[1:]])
    joiner = _WatchingJoiner()
    # Act: take each tensor, keep only a weak reference, ask for the next
    got: dict[str, np.ndarray] = {}
    for tensor in _join(_chunks((chunks[0],), frames), joiner):
        joiner.previous = weakref.ref(tensor.array)
        got[tensor.name] = tensor.array.copy()
        del tensor
    # Assert: the bytes are right, and no buffer outlived the opening of its successor's
    assert set(got) == set(sent)
    for name, array in sent.items():
        np.testing.assert_array_equal(got[name], array)
    assert joiner.alive_at_open == [False, False]
