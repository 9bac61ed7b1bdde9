"""``LocalDataset``: one site's own data as runners read it, and the pieces every loader shares.

``data`` sits beside ``plan`` in the layer rules, so loaders read the plan's ``DataContract``
through the structural :class:`ContractLike` rather than importing it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from openfl_like.core.errors import DataError

DEFAULT_VALID_FRACTION = 0.2


class ContractLike(Protocol):
    """What loaders and checks read of ``openfl_like.plan.schema.DataContract``."""

    @property
    def features(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def classes(self) -> tuple[str, ...]: ...
    @property
    def image_size(self) -> tuple[int, int] | None: ...
    @property
    def color_mode(self) -> str | None: ...
    @property
    def columns(self) -> tuple[str, ...]: ...
    @property
    def label_column(self) -> str: ...


@dataclass(frozen=True, eq=False)
class LocalDataset:
    """A site's train and validation arrays (read-only); satisfies ``runners.common.ShardLike``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    source: str  # the file, glob or folder read (for messages)
    loader: str

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def num_valid(self) -> int:
        return int(self.y_valid.shape[0])

    def describe(self) -> dict[str, object]:
        """Sample counts and where they came from (what a site reports; never the data)."""
        return {"loader": self.loader, "source": self.source, "train": self.num_train,
                "valid": self.num_valid, "features": list(self.x_train.shape[1:])}

    def class_counts(self, num_classes: int) -> tuple[int, ...]:
        """Training samples per class index (labels must be class indices)."""
        return tuple(int(c) for c in np.bincount(self.y_train, minlength=num_classes))


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def split_valid(
    x: np.ndarray, y: np.ndarray, *, fraction: float, seed: int, source: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_valid, y_valid): a seeded shuffle, the same on every run."""
    n = int(y.shape[0])
    if n < 2:
        raise DataError(f"{source}: {n} sample(s); at least 2 are needed to hold out validation")
    n_valid = min(max(1, round(n * fraction)), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    tr, va = np.sort(order[n_valid:]), np.sort(order[:n_valid])
    return x[tr], y[tr], x[va], y[va]


def make_dataset(
    params: Mapping[str, object],
    train: tuple[np.ndarray, np.ndarray],
    valid: tuple[np.ndarray, np.ndarray] | None,
    *,
    source: str,
    loader: str,
) -> LocalDataset:
    """Build the dataset, splitting validation off ``train`` when no validation set was given.

    Refuses what no contract could accept: an empty part and non-finite features.
    """
    x, y = train
    if y.shape[0] == 0:
        raise DataError(f"{source}: no samples")
    # Before any split, so counts and row indices refer to the data as read.
    _check_finite(source, "x_train", x)
    if valid is not None:
        _check_finite(source, "x_valid", valid[0])
    if valid is None:
        fraction = float(params.get("valid_fraction", DEFAULT_VALID_FRACTION))  # type: ignore[arg-type]
        seed = int(params.get("seed", 0))  # type: ignore[call-overload]
        x_tr, y_tr, x_va, y_va = split_valid(x, y, fraction=fraction, seed=seed, source=source)
    else:
        x_tr, y_tr = x, y
        x_va, y_va = valid
    for part, xs, ys in (("train", x_tr, y_tr), ("valid", x_va, y_va)):
        if ys.shape[0] == 0:
            raise DataError(f"{source}: x_{part}: no samples")
        if xs.shape[0] != ys.shape[0]:
            raise DataError(f"{source}: x_{part} has {xs.shape[0]} samples, "
                            f"y_{part} has {ys.shape[0]}")
    return LocalDataset(x_train=readonly(x_tr), y_train=readonly(y_tr), x_valid=readonly(x_va),
                        y_valid=readonly(y_va), source=source, loader=loader)


def _check_finite(source: str, name: str, x: np.ndarray) -> None:
    if not np.issubdtype(x.dtype, np.floating):
        return
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    if bad.any():
        raise DataError(f"{source}: {name}: {int(bad.sum())} row(s) have NaN or infinite "
                        f"features (first at row index {int(np.argmax(bad))})")


def label_indices(
    values: list[str], contract: ContractLike, *, where: list[str]
) -> np.ndarray:
    """Class names -> indices of ``contract.classes``; ``where[i]`` locates value i in errors."""
    index = {name: i for i, name in enumerate(contract.classes)}
    out = np.empty(len(values), dtype=np.int64)
    for i, value in enumerate(values):
        found = index.get(value)
        if found is None:
            raise DataError(f"{where[i]}: label {value!r} is not in the plan's classes "
                            f"({', '.join(contract.classes)})")
        out[i] = found
    return out
