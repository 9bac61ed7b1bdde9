"""Partitioning maths on synthetic labels: sizes, coverage, determinism, skew and errors."""

from __future__ import annotations

import numpy as np
import pytest

from openfl_like.core.errors import ConfigError
from openfl_like.data import sharding


def _labels(n_per_class: int = 50, classes: int = 10) -> np.ndarray:
    return np.repeat(np.arange(classes), n_per_class)


def test_stratified_split_keeps_class_proportions_and_exact_size() -> None:
    # Prepare
    labels = _labels()
    # Execute
    rest, held = sharding.stratified_split(labels, 0.2, np.random.default_rng(0))
    # Assert
    assert held.size == 100
    assert np.intersect1d(rest, held).size == 0
    assert np.union1d(rest, held).size == labels.size
    assert np.bincount(labels[held]).tolist() == [10] * 10


def test_iid_partition_covers_everything_once_with_near_equal_sizes() -> None:
    parts = sharding.iid_partition(103, 4, np.random.default_rng(1))
    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(103))


def test_dirichlet_partition_respects_minimum_and_covers_everything() -> None:
    labels = _labels()
    parts = sharding.dirichlet_partition(
        labels, 8, alpha=0.05, min_size=30, rng=np.random.default_rng(3)
    )
    assert min(p.size for p in parts) >= 30
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(labels.size))


def test_top_up_moves_items_from_largest_to_smallest() -> None:
    parts = [np.arange(0, 2), np.arange(2, 40), np.arange(40, 45)]
    fixed = sharding._top_up(parts, min_size=10)
    assert [p.size for p in fixed] == [10, 25, 10]
    assert np.array_equal(np.sort(np.concatenate(fixed)), np.arange(45))


def test_train_valid_split_keeps_both_parts_non_empty() -> None:
    train, valid = sharding.train_valid_split(np.arange(2), 0.01, np.random.default_rng(0))
    assert train.size == 1 and valid.size == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: sharding.iid_partition(10, 0, np.random.default_rng(0)),
            "num_shards: must be >= 1",
        ),
        (lambda: sharding.iid_partition(3, 4, np.random.default_rng(0)), "only 3 are available"),
        (
            lambda: sharding.dirichlet_partition(
                _labels(), 2, alpha=0.0, min_size=1, rng=np.random.default_rng(0)
            ),
            "alpha: must be a finite number > 0",
        ),
        (
            lambda: sharding.stratified_split(_labels(), 1.0, np.random.default_rng(0)),
            "test_fraction",
        ),
        (
            lambda: sharding.train_valid_split(np.arange(10), 0.0, np.random.default_rng(0)),
            "valid_fraction",
        ),
    ],
)
def test_bad_arguments_raise_config_error(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()
