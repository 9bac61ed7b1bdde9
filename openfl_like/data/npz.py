"""``npz`` loader: a NumPy archive with configurable keys, read without pickle.

``allow_pickle=False`` because a data file from anywhere must never run code when loaded.
Labels may be class indices (integers) or class names (strings, mapped through the contract).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from openfl_like.core.errors import DataError
from openfl_like.data.dataset import ContractLike, LocalDataset, label_indices, make_dataset


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz archive without pickled objects "
                        f"({exc})") from None


def _pick(arrays: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in arrays:
        raise DataError(f"{path}: key {key!r} missing (found: {', '.join(sorted(arrays))})")
    return arrays[key]


def _labels(y: np.ndarray, contract: ContractLike | None, path: Path, key: str) -> np.ndarray:
    if y.dtype.kind in "US" and contract is not None and contract.label == "classes":
        names = [str(v) for v in y.astype(str).ravel()]
        return label_indices(names, contract, where=[f"{path}: {key}[{i}]"
                                                     for i in range(len(names))])
    return y


def _features(x: np.ndarray, contract: ContractLike | None, path: Path, key: str) -> np.ndarray:
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: {key}: features must be numbers (got dtype {x.dtype})")
    return x.astype(contract.dtype if contract else np.float32, copy=False)


def load_npz(params: Mapping[str, object], contract: ContractLike | None) -> LocalDataset:
    path = Path(str(params["path"]))
    x_key, y_key = str(params.get("x_key", "x_train")), str(params.get("y_key", "y_train"))
    arrays = _read(path)
    x = _features(_pick(arrays, x_key, path), contract, path, x_key)
    y = _labels(_pick(arrays, y_key, path), contract, path, y_key)
    valid = None
    if "valid_path" in params:
        vpath = Path(str(params["valid_path"]))
        varrays = _read(vpath)
        valid = (_features(_pick(varrays, x_key, vpath), contract, vpath, x_key),
                 _labels(_pick(varrays, y_key, vpath), contract, vpath, y_key))
    elif "valid_fraction" not in params:
        xv_key = str(params.get("x_valid_key", "x_valid"))
        yv_key = str(params.get("y_valid_key", "y_valid"))
        explicit = "x_valid_key" in params or "y_valid_key" in params
        if explicit or (xv_key in arrays and yv_key in arrays):
            valid = (_features(_pick(arrays, xv_key, path), contract, path, xv_key),
                     _labels(_pick(arrays, yv_key, path), contract, path, yv_key))
    return make_dataset(params, (x, y), valid, source=str(path), loader="npz")
