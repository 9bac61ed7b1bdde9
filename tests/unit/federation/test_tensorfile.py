"""Tensor files: exact round trips, including while the background sync runs mid-write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from openfl_like.core.errors import FederationError
from openfl_like.federation import tensorfile
from openfl_like.federation.tensorfile import (
    TensorFileReader,
    TensorFileWriter,
    manifest_path,
    read_tensor_file,
)


def test_round_trip_with_many_background_syncs(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: sync after every 1000 bytes, so the helper thread runs during the writes.
    monkeypatch.setattr(tensorfile, "SYNC_EVERY_BYTES", 1000)
    monkeypatch.setattr(tensorfile, "_WRITE_PIECE", 4096)  # several write() calls per array
    rng = np.random.default_rng(0)
    arrays = {
        "a": rng.normal(size=(300, 70)).astype(np.float32),
        "b": np.arange(7, dtype=np.int64),
        "c": np.array(3.5, dtype=np.float64),
        "d": rng.normal(size=(50, 40)).T,  # not C-contiguous
        "e": np.zeros((0, 3), dtype=np.float32),
    }
    # Execute
    with TensorFileWriter(tmp_path / "m.bin") as writer:
        for name, array in arrays.items():
            writer.write(name, array)
    # Assert
    back = read_tensor_file(tmp_path / "m.bin")
    assert list(back) == list(arrays)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape
        assert np.array_equal(back[name], array), name
    with TensorFileReader(tmp_path / "m.bin") as reader:
        block = np.empty(5, dtype=np.float32)
        assert np.array_equal(reader.read_into("a", 71, block), arrays["a"].reshape(-1)[71:76])


def test_aborted_write_leaves_nothing_and_no_manifest_means_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    with pytest.raises(RuntimeError), TensorFileWriter(path) as writer:
        writer.write("a", np.ones(10))
        raise RuntimeError("stream broke")
    assert not path.exists() and not manifest_path(path).exists()
    writer = TensorFileWriter(path)
    writer.write("a", np.ones(10))
    with pytest.raises(FederationError, match="unreadable tensor file"):
        TensorFileReader(path)  # data without a manifest: an interrupted write
    writer.abort()
    with pytest.raises(FederationError, match="already committed"):
        writer.write("b", np.ones(1))


def test_commit_without_manifest_file_is_read_with_the_layout_kept_elsewhere(
        tmp_path: Path) -> None:
    # Execute: the aggregator's staging way: no manifest file, the layout goes elsewhere.
    path = tmp_path / "u.bin"
    writer = TensorFileWriter(path)
    writer.write("w", np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.write("b", np.array([7], dtype=np.int64))
    layout = tensorfile.layout_of(writer.commit(manifest_file=False))
    # Assert: only the data file exists; with the (JSON round-tripped) layout it reads back.
    assert path.exists() and not manifest_path(path).exists()
    with pytest.raises(FederationError, match="unreadable tensor file"):
        TensorFileReader(path)
    entries = tensorfile.entries_of(json.loads(json.dumps(layout)))
    with TensorFileReader(path, entries) as reader:
        assert reader.read("w").tolist() == [[0, 1, 2], [3, 4, 5]]
        assert reader.read("b").dtype == np.int64 and reader.read("b").tolist() == [7]


def test_background_sync_thread_starts_only_for_big_files(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    real = tensorfile._BackgroundSync

    class Recording(real):  # type: ignore[misc,valid-type]
        def __init__(self, fd: int) -> None:
            started.append(fd)
            super().__init__(fd)

    monkeypatch.setattr(tensorfile, "_BackgroundSync", Recording)
    monkeypatch.setattr(tensorfile, "SYNC_EVERY_BYTES", 4096)
    tensorfile.write_tensor_file(tmp_path / "small.bin", {"a": np.ones(100, np.float32)})
    assert started == []  # a small file is synced once, in commit
    tensorfile.write_tensor_file(tmp_path / "big.bin", {"a": np.ones(10_000, np.float32)})
    assert len(started) == 1
    assert read_tensor_file(tmp_path / "big.bin")["a"].sum() == 10_000
