"""scikit-learn's bundled 8x8 digits as a federation: a held-out test set and N private shards.

The data set ships inside scikit-learn (1797 images, no download). Pixels 0..16 become float32 in
[0, 1]; labels are int64 classes 0..9. Every split is a pure function of the seed, so each
collaborator process computes the same partition and picks its own shard, and the aggregator
recomputes the same held-out test set for the final evaluation.

The samples are read from the file scikit-learn ships (without importing scikit-learn, which
costs seconds); ``sklearn.datasets.load_digits`` is the fallback if that file moves.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openfl_like.core.errors import ConfigError
from openfl_like.data import sharding

NUM_CLASSES = 10
IMAGE_SHAPE = (8, 8)
SHARDING_METHODS = ("iid", "dirichlet")

# Independent random streams per purpose: the test split must not depend on the shard settings.
_STREAM_TEST, _STREAM_SHARDS, _STREAM_VALID = 0, 1, 2


@dataclass(frozen=True, eq=False)
class Shard:
    """One collaborator's private data: a training part and a validation part (read-only arrays).

    ``x_*`` are float32 of shape (n, 64) in [0, 1]; ``y_*`` are int64 class labels.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    index: int
    num_shards: int

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def num_valid(self) -> int:
        return int(self.y_valid.shape[0])

    def class_counts(self) -> np.ndarray:
        """Training samples per class (length NUM_CLASSES), e.g. for shard descriptions."""
        return np.bincount(self.y_train, minlength=NUM_CLASSES)


@dataclass(frozen=True, eq=False)
class DigitsSplit:
    """The held-out test set (for the aggregator) and the shards (one per collaborator)."""

    x_test: np.ndarray
    y_test: np.ndarray
    shards: tuple[Shard, ...]


@functools.lru_cache(maxsize=1)
def _load_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 samples as read-only (float32 features in [0, 1], int64 labels)."""
    raw = _read_bundled_csv()
    if raw is None:
        raw = _load_with_sklearn()
    x, y = raw
    features = (np.asarray(x, dtype=np.float32) / np.float32(16.0)).astype(np.float32)
    labels = np.asarray(y, dtype=np.int64)
    return _readonly(features), _readonly(labels)


def _read_bundled_csv() -> tuple[np.ndarray, np.ndarray] | None:
    """Read scikit-learn's ``datasets/data/digits.csv.gz`` without importing scikit-learn.

    Importing sklearn (and the scipy it pulls in) costs seconds of CPU in every collaborator
    process; the file it would read is 60 kB. None when the file is not where it used to be.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    try:
        rows = gzip.decompress(path.read_bytes()).decode("ascii").split()
        table = np.array(",".join(rows).split(","), dtype=np.float64).reshape(len(rows), -1)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if table.shape != (1797, 65):
        return None
    return table[:, :-1], table[:, -1]


def _load_with_sklearn() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ConfigError(
            "the digits data set needs scikit-learn: pip install 'openfl_like[ml]'"
        ) from exc
    x, y = load_digits(return_X_y=True)
    return np.asarray(x), np.asarray(y)


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([stream, _check_seed(seed)])


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed: must be an integer >= 0, got {seed!r}")
    return int(seed)


def _test_split(seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, test_indices) of the full data set."""
    _, y = _load_arrays()
    return sharding.stratified_split(y, test_fraction, _rng(seed, _STREAM_TEST))


def load_digits_with_ids(
    *, seed: int = 0, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train_ids, test_ids, x, y): the whole data set (read-only) and the indices of the same
    held-out split as :func:`load_digits_test_set`. The indices serve as sample ids, e.g. for
    two vertical parties that must hold the same samples in the same order."""
    x, y = _load_arrays()
    train_idx, test_idx = _test_split(seed, test_fraction)
    return _readonly(np.asarray(train_idx, dtype=np.int64)), _readonly(
        np.asarray(test_idx, dtype=np.int64)), x, y


def load_digits_test_set(
    *, seed: int = 0, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray]:
    """The held-out (x_test, y_test): identical to ``load_digits_federation(...).x_test/y_test``
    for the same seed and test_fraction, whatever the shard settings."""
    x, y = _load_arrays()
    _, test_idx = _test_split(seed, test_fraction)
    return _readonly(x[test_idx]), _readonly(y[test_idx])


def load_digits_federation(
    num_shards: int,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    method: str = "iid",
    alpha: float = 0.5,
    valid_fraction: float = 0.15,
    min_shard_size: int = 10,
) -> DigitsSplit:
    """Split digits into a held-out test set and ``num_shards`` train/valid shards.

    ``method="iid"`` shuffles and cuts near-equal parts; ``method="dirichlet"`` gives each shard
    per-class proportions ~ Dir(alpha) (smaller alpha, more skew) with at least ``min_shard_size``
    samples per shard. Each shard is then split ``1 - valid_fraction`` / ``valid_fraction``.
    """
    if method not in SHARDING_METHODS:
        raise ConfigError(
            f"method: unknown sharding method {method!r}; known: {', '.join(SHARDING_METHODS)}"
        )
    if not isinstance(min_shard_size, int) or min_shard_size < 2:
        raise ConfigError(
            f"min_shard_size: must be an integer >= 2 (one train and one valid sample), "
            f"got {min_shard_size!r}"
        )
    if not 0.0 < valid_fraction < 1.0:
        raise ConfigError(
            f"valid_fraction: must be between 0 and 1 (exclusive), got {valid_fraction}"
        )
    x, y = _load_arrays()
    train_idx, test_idx = _test_split(seed, test_fraction)
    shard_rng = _rng(seed, _STREAM_SHARDS)
    if method == "iid":
        sharding.check_shard_count(train_idx.size, num_shards, min_size=min_shard_size)
        parts = sharding.iid_partition(train_idx.size, num_shards, shard_rng)
    else:
        parts = sharding.dirichlet_partition(
            y[train_idx], num_shards, alpha=alpha, min_size=min_shard_size, rng=shard_rng
        )
    valid_rng = _rng(seed, _STREAM_VALID)
    shards = []
    for i, part in enumerate(parts):
        tr, va = sharding.train_valid_split(train_idx[part], valid_fraction, valid_rng)
        shards.append(
            Shard(
                x_train=_readonly(x[tr]),
                y_train=_readonly(y[tr]),
                x_valid=_readonly(x[va]),
                y_valid=_readonly(y[va]),
                index=i,
                num_shards=num_shards,
            )
        )
    return DigitsSplit(
        x_test=_readonly(x[test_idx]), y_test=_readonly(y[test_idx]), shards=tuple(shards)
    )


def load_digits_shard(index: int, num_shards: int, **kwargs: object) -> Shard:
    """Shard ``index`` of ``load_digits_federation(num_shards, **kwargs)``: one collaborator's."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_shards:
        raise ConfigError(f"shard index: must be in [0, {num_shards}), got {index!r}")
    return load_digits_federation(num_shards, **kwargs).shards[index]  # type: ignore[arg-type]
