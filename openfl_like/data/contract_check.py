"""``check_dataset``: does a site's loaded data match the plan's data contract?

Run before a site joins, so a wrong shape, dtype or label fails on the site with the file named,
not as a broken aggregate rounds later.
"""

from __future__ import annotations

import numpy as np

from openfl_like.core.errors import DataError
from openfl_like.data.dataset import ContractLike, LocalDataset


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(["n", *(str(d) for d in shape)]) + ")"


def check_dataset(dataset: LocalDataset, contract: ContractLike) -> None:
    """Raise DataError naming the source and the first mismatch; return None when all fits."""
    src = dataset.source
    for part in ("train", "valid"):
        x: np.ndarray = getattr(dataset, f"x_{part}")
        y: np.ndarray = getattr(dataset, f"y_{part}")
        if x.shape[0] == 0:
            raise DataError(f"{src}: x_{part}: no samples")
        if tuple(x.shape[1:]) != tuple(contract.features):
            raise DataError(f"{src}: x_{part}: shape {_shape(x.shape[1:])}, the plan expects "
                            f"{_shape(contract.features)}")
        if x.dtype != np.dtype(contract.dtype):
            raise DataError(f"{src}: x_{part}: dtype {x.dtype}, the plan expects "
                            f"{contract.dtype}")
        if y.shape != (x.shape[0],):
            raise DataError(f"{src}: y_{part}: shape {y.shape}, expected ({x.shape[0]},) "
                            "(one label per sample)")
        if contract.label == "classes":
            _check_classes(src, f"y_{part}", y, len(contract.classes))
        elif not np.issubdtype(y.dtype, np.number) or not np.isfinite(y).all():
            raise DataError(f"{src}: y_{part}: regression targets must be finite numbers")


def _check_classes(src: str, name: str, y: np.ndarray, num_classes: int) -> None:
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{src}: {name}: class labels must be integers or class names "
                        f"(got dtype {y.dtype})")
    outside = (y < 0) | (y >= num_classes)
    if outside.any():
        raise DataError(f"{src}: {name}: {int(outside.sum())} label(s) outside the plan's "
                        f"{num_classes} classes (e.g. {int(y[outside][0])})")
