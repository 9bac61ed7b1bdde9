"""Checkpoints: round trip, checksum, keep, stale temporary files, newest-common choice."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest

from openfl_like.vertical.agreement import newest_common
from openfl_like.vertical.checkpoints import (
    CheckpointMeta,
    CheckpointStore,
    CorruptCheckpointError,
)


def _arrays(value: float) -> dict[str, np.ndarray]:
    return {"model/0000": np.full((3, 2), value, np.float32),
            "optimizer/0000": np.array(7, np.int64)}


def test_round_trip(tmp_path: Path) -> None:
    # Prepare
    store = CheckpointStore(tmp_path, keep=3)
    # Execute
    path = store.save(CheckpointMeta(20, 1, 64), _arrays(1.5))
    meta, arrays = store.load(20)
    # Assert
    assert path.name == "ckpt-0000000020.npz"
    assert meta == CheckpointMeta(20, 1, 64)
    assert set(arrays) == {"model/0000", "optimizer/0000"}
    np.testing.assert_array_equal(arrays["model/0000"], _arrays(1.5)["model/0000"])
    assert arrays["optimizer/0000"].dtype == np.int64 and arrays["optimizer/0000"].shape == ()
    with np.load(path, allow_pickle=False) as raw:  # a plain .npz, no pickle
        assert "__sha256__" in raw.files


def test_keeps_the_newest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    for version in (10, 20, 30, 40):
        store.save(CheckpointMeta(version, 0, version), _arrays(version))
    assert store.valid_versions() == [30, 40]
    store.drop_newer_than(30)
    assert store.valid_versions() == [30]
    store.clear()
    assert store.valid_versions() == []


def _rewrite_member(path: Path, member: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as src:
        items = {i.filename: src.read(i.filename) for i in src.infolist()}
    items[member] = data
    with zipfile.ZipFile(path, "w") as dst:
        for name, payload in items.items():
            dst.writestr(name, payload)


def test_corrupt_checkpoints_are_skipped_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: 3 good versions; 20 has a changed weight (a valid zip, a wrong checksum),
    # 30 is cut in half (not a zip any more)
    store = CheckpointStore(tmp_path, keep=5)
    for version in (10, 20, 30):
        store.save(CheckpointMeta(version, 0, 0), _arrays(version))
    other = CheckpointStore(tmp_path / "other", keep=5)
    other.save(CheckpointMeta(20, 0, 0), _arrays(99))
    with zipfile.ZipFile(other.path(20)) as z:
        forged = z.read("model/0000.npy")
    _rewrite_member(store.path(20), "model/0000.npy", forged)
    whole = store.path(30).read_bytes()
    store.path(30).write_bytes(whole[: len(whole) // 2])
    # Execute
    with caplog.at_level(logging.WARNING):
        valid = store.valid_versions()
    # Assert
    assert valid == [10]
    text = caplog.text
    assert "skipping checkpoint 20" in text and "checksum mismatch" in text
    assert "skipping checkpoint 30" in text
    with pytest.raises(CorruptCheckpointError, match="checksum mismatch"):
        store.load(20)


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".ckpt-0000000010.npz.abc.tmp").write_bytes(b"half")
    CheckpointStore(tmp_path, keep=2)
    assert list(tmp_path.iterdir()) == []


def test_version_zero_and_reserved_names_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    with pytest.raises(ValueError, match="start at 1"):
        store.save(CheckpointMeta(0, 0, 0), _arrays(1))
    with pytest.raises(ValueError, match="reserved"):
        store.save(CheckpointMeta(1, 0, 0), {"__meta__": np.zeros(1)})


def test_newest_common() -> None:
    assert newest_common([20, 40, 60], [0, 20, 40]) == 40
    assert newest_common([20, 40], [0]) == 0
    assert newest_common([], [0, 20]) == 0
