"""``csv`` loader: one file or a glob of files with a header row (stdlib ``csv`` + numpy).

Features are the contract's ``columns`` in that order, or every column but the label column.
Labels are class names looked up in the contract's class list (``"3"`` finds class ``'3'``),
or numbers for regression. Every refusal names the file, and the row and column when it has one.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from openfl_like.core.errors import DataError
from openfl_like.data.dataset import ContractLike, LocalDataset, label_indices, make_dataset

_GLOB_CHARS = frozenset("*?[")


def _files(pattern: str) -> list[Path]:
    if _GLOB_CHARS & set(pattern):
        found = sorted(glob.glob(pattern))
        if not found:
            raise DataError(f"{pattern}: no file matches")
        return [Path(p) for p in found]
    return [Path(pattern)]


def _read_file(
    path: Path, contract: ContractLike, delimiter: str
) -> tuple[list[str], list[list[float]], list[str], list[str]]:
    """(feature columns, feature rows, label cells, 'file: row N' of each label)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: empty file (expected a header row)")
            header = [h.strip() for h in header]
            wanted = list(contract.columns) or [h for h in header if h != contract.label_column]
            for name in [*wanted, contract.label_column]:
                if name not in header:
                    raise DataError(f"{path}: column {name!r} missing")
            cols = [header.index(name) for name in wanted]
            label_col = header.index(contract.label_column)
            rows: list[list[float]] = []
            labels: list[str] = []
            where: list[str] = []
            for cells in reader:
                if not cells:
                    continue
                line = reader.line_num
                if len(cells) != len(header):
                    raise DataError(f"{path}: row {line}: {len(cells)} cells, the header has "
                                    f"{len(header)}")
                row = []
                for name, col in zip(wanted, cols, strict=True):
                    try:
                        row.append(float(cells[col]))
                    except ValueError:
                        raise DataError(f"{path}: row {line}: column {name!r}: not a number "
                                        f"({cells[col]!r})") from None
                rows.append(row)
                labels.append(cells[label_col].strip())
                where.append(f"{path}: row {line}")
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not valid CSV ({exc})") from None
    return wanted, rows, labels, where


def _labels(labels: list[str], where: list[str], contract: ContractLike) -> np.ndarray:
    if contract.label == "classes":
        return label_indices(labels, contract, where=where)
    out = np.empty(len(labels), dtype=contract.dtype)
    for i, cell in enumerate(labels):
        try:
            out[i] = float(cell)
        except ValueError:
            raise DataError(f"{where[i]}: label {cell!r} is not a number") from None
    return out


def _load(pattern: str, contract: ContractLike, delimiter: str) -> tuple[np.ndarray, np.ndarray]:
    rows: list[list[float]] = []
    labels: list[str] = []
    where: list[str] = []
    columns: list[str] | None = None
    for path in _files(pattern):
        wanted, r, lab, w = _read_file(path, contract, delimiter)
        if columns is not None and wanted != columns:
            raise DataError(f"{path}: feature columns {wanted} differ from the first file's "
                            f"{columns}")
        columns = wanted
        rows += r
        labels += lab
        where += w
    x = np.array(rows, dtype=contract.dtype).reshape(len(rows), len(columns or ()))
    return x, _labels(labels, where, contract)


def load_csv(params: Mapping[str, object], contract: ContractLike | None) -> LocalDataset:
    if contract is None:
        raise DataError("the csv loader needs the plan's data_contract (classes, columns)")
    delimiter = str(params.get("delimiter", ","))
    pattern = str(params["path"])
    train = _load(pattern, contract, delimiter)
    valid = None
    if "valid_path" in params:
        valid = _load(str(params["valid_path"]), contract, delimiter)
    return make_dataset(params, train, valid, source=pattern, loader="csv")
