"""The digits federation: held-out set, shards, determinism by seed and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from openfl_like.core.errors import ConfigError
from openfl_like.data.digits import (
    NUM_CLASSES,
    load_digits_federation,
    load_digits_shard,
    load_digits_test_set,
)

TOTAL = 1797


def _rows(*arrays: np.ndarray) -> set[bytes]:
    return {row.tobytes() for a in arrays for row in a}


def test_features_and_labels_have_the_documented_types_and_ranges() -> None:
    split = load_digits_federation(3)
    shard = split.shards[0]
    assert shard.x_train.dtype == np.float32 and shard.x_train.shape[1] == 64
    assert shard.y_train.dtype == np.int64
    assert split.x_test.min() >= 0.0 and split.x_test.max() <= 1.0
    assert set(np.unique(split.y_test)) == set(range(NUM_CLASSES))
    assert not shard.x_train.flags.writeable  # shards are shared, so nobody may edit them


def test_iid_shards_are_near_equal_and_everything_is_used_once() -> None:
    # Execute
    split = load_digits_federation(3, seed=0)
    # Assert
    sizes = [s.num_train + s.num_valid for s in split.shards]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) + split.y_test.size == TOTAL
    assert split.y_test.size == round(0.2 * TOTAL)
    for s in split.shards:
        assert s.num_valid == round(0.15 * (s.num_train + s.num_valid))
        assert (s.index, s.num_shards) == (split.shards.index(s), 3)


def test_test_set_does_not_overlap_any_shard() -> None:
    # The 1797 digit images are pairwise distinct, so comparing rows compares samples.
    split = load_digits_federation(4, seed=5, method="dirichlet", alpha=0.3)
    shard_arrays = [a for s in split.shards for a in (s.x_train, s.x_valid)]
    assert len(_rows(split.x_test, *shard_arrays)) == TOTAL
    assert not _rows(split.x_test) & _rows(*shard_arrays)
    assert sum(len(a) for a in shard_arrays) + split.y_test.size == TOTAL


def test_same_seed_same_split_and_other_seed_differs() -> None:
    a = load_digits_federation(3, seed=7, method="dirichlet")
    b = load_digits_federation(3, seed=7, method="dirichlet")
    c = load_digits_federation(3, seed=8, method="dirichlet")
    for sa, sb in zip(a.shards, b.shards, strict=True):
        assert np.array_equal(sa.x_train, sb.x_train) and np.array_equal(sa.y_valid, sb.y_valid)
    assert not np.array_equal(a.shards[0].y_train, c.shards[0].y_train)


def test_held_out_set_is_the_same_whatever_the_shard_settings() -> None:
    x_test, y_test = load_digits_test_set(seed=3)
    for kwargs in ({"num_shards": 2}, {"num_shards": 5, "method": "dirichlet", "alpha": 0.1}):
        split = load_digits_federation(seed=3, **kwargs)
        assert np.array_equal(split.x_test, x_test) and np.array_equal(split.y_test, y_test)
    assert not np.array_equal(load_digits_test_set(seed=4)[1], y_test)


def test_dirichlet_skew_is_measurable_and_shrinks_with_alpha() -> None:
    def mean_skew(split) -> float:
        """Mean total-variation distance between each shard's label mix and the global one."""
        global_mix = np.bincount(
            np.concatenate([s.y_train for s in split.shards]), minlength=NUM_CLASSES
        )
        global_mix = global_mix / global_mix.sum()
        tv = [0.5 * np.abs(s.class_counts() / s.num_train - global_mix).sum() for s in split.shards]
        return float(np.mean(tv))

    iid = mean_skew(load_digits_federation(5, seed=1))
    skewed = mean_skew(load_digits_federation(5, seed=1, method="dirichlet", alpha=0.1))
    mild = mean_skew(load_digits_federation(5, seed=1, method="dirichlet", alpha=100.0))
    assert iid < 0.1
    assert skewed > 0.4
    assert mild < skewed


def test_dirichlet_shards_get_the_minimum_size() -> None:
    split = load_digits_federation(20, seed=2, method="dirichlet", alpha=0.05, min_shard_size=40)
    assert min(s.num_train + s.num_valid for s in split.shards) >= 40


def test_load_digits_shard_is_the_same_as_the_federation_view() -> None:
    shard = load_digits_shard(1, 3, seed=4)
    assert np.array_equal(shard.x_train, load_digits_federation(3, seed=4).shards[1].x_train)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_shards": 0}, "num_shards: must be >= 1"),
        ({"num_shards": 2000}, "only 1438 are available"),
        ({"num_shards": 2, "method": "dirichlet", "alpha": 0.0}, "alpha: must be"),
        ({"num_shards": 2, "method": "pathological"}, "unknown sharding method"),
        ({"num_shards": 2, "test_fraction": 0.0}, "test_fraction"),
        ({"num_shards": 2, "valid_fraction": 1.0}, "valid_fraction"),
        ({"num_shards": 2, "seed": -1}, "seed: must be an integer >= 0"),
        ({"num_shards": 2, "min_shard_size": 1}, "min_shard_size"),
    ],
)
def test_bad_arguments_raise_a_clear_config_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_digits_federation(**kwargs)


def test_shard_index_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"shard index: must be in \[0, 3\)"):
        load_digits_shard(3, 3)


def test_bundled_file_reader_matches_sklearn_load_digits() -> None:
    from sklearn.datasets import load_digits

    from openfl_like.data import digits

    x, y = digits._read_bundled_csv()  # type: ignore[misc]
    ref_x, ref_y = load_digits(return_X_y=True)
    assert np.array_equal(x, ref_x) and np.array_equal(y, ref_y)
    fx, fy = digits._load_with_sklearn()
    assert np.array_equal(fx, ref_x) and np.array_equal(fy, ref_y)
