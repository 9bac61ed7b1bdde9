"""image_folder loader: class sub-folders in contract order, resize, colour mode, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openfl_like.core.errors import DataError
from openfl_like.data.contract_check import check_dataset
from openfl_like.data.image_folder import load_image_folder
from openfl_like.plan.schema import DataContract
from tests.unit.data.conftest import write_png


def _tree(root: Path, classes: dict[str, int], mode: str = "L") -> Path:
    for index, (name, count) in enumerate(classes.items()):
        for i in range(count):
            write_png(root / name / f"{i}.png", mode=mode, value=40 * (index + 1))
    return root


def test_reads_resizes_and_scales(tmp_path: Path, images: DataContract) -> None:
    # Prepare: the contract lists owl, cat, dog (not alphabetical); pixel values tell folders.
    root = _tree(tmp_path / "images", {"owl": 2, "cat": 3, "dog": 3})
    (root / "cat" / "notes.txt").write_text("not an image")
    # Execute
    ds = load_image_folder({"path": str(root), "valid_fraction": 0.25, "seed": 0}, images)
    # Assert
    assert ds.x_train.shape[1:] == (4, 5, 1) and ds.x_train.dtype == np.float32
    assert ds.num_train + ds.num_valid == 8
    x = np.concatenate([ds.x_train, ds.x_valid])
    y = np.concatenate([ds.y_train, ds.y_valid])
    assert x.min() >= 0.0 and x.max() <= 1.0
    # Labels follow the contract's order, not the folders' alphabetical order.
    assert np.allclose(x[y == 0], 40 / 255)  # owl
    assert np.allclose(x[y == 1], 80 / 255)  # cat
    assert np.allclose(x[y == 2], 120 / 255)  # dog
    check_dataset(ds, images)


def test_rgb_and_valid_path(tmp_path: Path) -> None:
    contract = DataContract(features=(3, 3, 3), classes=("a", "b"), image_size=(3, 3),
                            color_mode="rgb")
    train = _tree(tmp_path / "train", {"a": 2, "b": 2}, mode="RGB")
    valid = _tree(tmp_path / "valid", {"a": 1, "b": 1}, mode="RGB")
    ds = load_image_folder({"path": str(train), "valid_path": str(valid)}, contract)
    assert ds.x_train.shape == (4, 3, 3, 3) and ds.num_valid == 2
    assert np.allclose(ds.x_train[0, 0, 0], [40 / 255, 0, 1])


def test_missing_class_folder(tmp_path: Path) -> None:
    contract = DataContract(features=(4, 5, 1), classes=("benign", "a", "b", "c"),
                            image_size=(4, 5))
    root = _tree(tmp_path / "images", {"a": 1, "b": 1, "c": 1})
    with pytest.raises(DataError, match=r"images/: 3 classes found, the plan lists 4: "
                                        r"missing 'benign'$"):
        load_image_folder({"path": str(root)}, contract)


def test_extra_class_folder(tmp_path: Path, images: DataContract) -> None:
    root = _tree(tmp_path / "images", {"cat": 1, "dog": 1, "owl": 1, "emu": 1})
    with pytest.raises(DataError, match="4 classes found, the plan lists 3: not in the plan 'emu'"):
        load_image_folder({"path": str(root)}, images)


def test_corrupt_image_is_named(tmp_path: Path, images: DataContract) -> None:
    root = _tree(tmp_path / "images", {"cat": 2, "dog": 2, "owl": 2})
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"dog/broken\.png: not a readable image"):
        load_image_folder({"path": str(root)}, images)


def test_empty_folders_and_no_folder(tmp_path: Path, images: DataContract) -> None:
    root = _tree(tmp_path / "images", {"cat": 0, "dog": 0, "owl": 0})
    for name in ("cat", "dog", "owl"):
        (root / name).mkdir(parents=True, exist_ok=True)
    with pytest.raises(DataError, match="images/: no samples"):
        load_image_folder({"path": str(root)}, images)
    with pytest.raises(DataError, match="nothere/: not a folder"):
        load_image_folder({"path": str(tmp_path / "nothere")}, images)
