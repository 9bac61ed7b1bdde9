"""Index partitioning for federated experiments: held-out split, IID and Dirichlet shards.

Everything here works on index arrays and an explicit ``numpy.random.Generator``, so a result is a
pure function of (labels, arguments, seed): two processes that call with the same seed get the
same shards, which is how every collaborator finds its own part without any data travelling.
"""

from __future__ import annotations

import numpy as np

from openfl_like.core.errors import ConfigError

IntArray = np.ndarray

# A Dirichlet draw can leave a shard under the minimum; redraws are cheap, and after this many we
# top small shards up from the largest ones instead (still deterministic).
_MAX_DIRICHLET_DRAWS = 100


def _apportion(total: int, weights: np.ndarray) -> np.ndarray:
    """Split the integer ``total`` in proportion to ``weights`` (largest-remainder rounding)."""
    weights = np.asarray(weights, dtype=np.float64)
    ideal = weights / weights.sum() * total
    counts = np.floor(ideal).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        # Stable sort: ties go to the earlier entry, so the result is fully determined.
        order = np.argsort(-(ideal - counts), kind="stable")
        counts[order[:short]] += 1
    return counts


def stratified_split(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Split indices into (rest, held_out) with ``fraction`` of each class held out.

    The held-out size is exactly ``round(fraction * n)``, spread over classes by their frequency.
    Both outputs are sorted so callers see a canonical order.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"test_fraction: must be between 0 and 1 (exclusive), got {fraction}")
    labels = np.asarray(labels)
    classes, class_sizes = np.unique(labels, return_counts=True)
    total_out = round(fraction * labels.size)
    per_class = _apportion(total_out, class_sizes.astype(np.float64))
    per_class = np.minimum(per_class, class_sizes - 1)  # keep every class in the training part
    held_out: list[np.ndarray] = []
    for cls, k in zip(classes, per_class, strict=True):
        members = np.flatnonzero(labels == cls)
        held_out.append(rng.permutation(members)[:k])
    out = np.sort(np.concatenate(held_out)) if held_out else np.empty(0, np.int64)
    rest = np.setdiff1d(np.arange(labels.size), out, assume_unique=True)
    return rest.astype(np.int64), out.astype(np.int64)


def iid_partition(num_items: int, num_shards: int, rng: np.random.Generator) -> list[IntArray]:
    """Shuffle ``range(num_items)`` and cut ``num_shards`` parts whose sizes differ by <= 1."""
    check_shard_count(num_items, num_shards, min_size=1)
    perm = rng.permutation(num_items).astype(np.int64)
    return [np.sort(part) for part in np.array_split(perm, num_shards)]


def dirichlet_partition(
    labels: np.ndarray,
    num_shards: int,
    *,
    alpha: float,
    min_size: int,
    rng: np.random.Generator,
) -> list[IntArray]:
    """Label-skewed shards: each class is spread over shards with proportions ~ Dir(alpha).

    Small ``alpha`` gives shards dominated by a few classes; large ``alpha`` approaches IID. Every
    shard ends up with at least ``min_size`` items: draws are repeated a bounded number of times,
    then the smallest shards are topped up from the largest.
    """
    if not alpha > 0.0 or not np.isfinite(alpha):
        raise ConfigError(f"alpha: must be a finite number > 0, got {alpha}")
    labels = np.asarray(labels)
    check_shard_count(labels.size, num_shards, min_size=min_size)
    classes = np.unique(labels)
    members = [rng.permutation(np.flatnonzero(labels == cls)) for cls in classes]

    shards: list[list[np.ndarray]] = []
    for _ in range(_MAX_DIRICHLET_DRAWS):
        shards = [[] for _ in range(num_shards)]
        for idx in members:
            proportions = rng.dirichlet(np.full(num_shards, alpha))
            counts = _apportion(idx.size, proportions)
            for shard, part in zip(shards, np.split(idx, np.cumsum(counts)[:-1]), strict=True):
                shard.append(part)
        if min(sum(p.size for p in parts) for parts in shards) >= min_size:
            break
    flat = [np.concatenate(parts).astype(np.int64) for parts in shards]
    flat = _top_up(flat, min_size)
    return [np.sort(part) for part in flat]


def _top_up(shards: list[IntArray], min_size: int) -> list[IntArray]:
    """Move items from the largest shards to any shard below ``min_size`` (deterministic)."""
    shards = [s.copy() for s in shards]
    while True:
        sizes = np.array([s.size for s in shards])
        small = int(np.argmin(sizes))
        if sizes[small] >= min_size:
            return shards
        large = int(np.argmax(sizes))
        take = min(min_size - int(sizes[small]), int(sizes[large]) - min_size)
        # check_shard_count guarantees enough items overall, so the largest always has spare.
        moved, shards[large] = shards[large][-take:], shards[large][:-take]
        shards[small] = np.concatenate([shards[small], moved])


def train_valid_split(
    indices: IntArray, valid_fraction: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Split one shard's indices into (train, valid); both parts keep at least one item."""
    if not 0.0 < valid_fraction < 1.0:
        raise ConfigError(
            f"valid_fraction: must be between 0 and 1 (exclusive), got {valid_fraction}"
        )
    if indices.size < 2:
        raise ConfigError(f"a shard of {indices.size} sample(s) cannot be split into train/valid")
    n_valid = min(max(1, round(valid_fraction * indices.size)), indices.size - 1)
    perm = rng.permutation(indices)
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def check_shard_count(num_items: int, num_shards: int, *, min_size: int) -> None:
    """Refuse a shard count that is not a positive integer or cannot give each shard min_size."""
    if isinstance(num_shards, bool) or not isinstance(num_shards, int | np.integer):
        raise ConfigError(f"num_shards: must be an integer, got {num_shards!r}")
    if num_shards < 1:
        raise ConfigError(f"num_shards: must be >= 1, got {num_shards}")
    if min_size < 1:
        raise ConfigError(f"min_shard_size: must be >= 1, got {min_size}")
    if num_shards * min_size > num_items:
        raise ConfigError(
            f"num_shards: {num_shards} shards of at least {min_size} samples need "
            f"{num_shards * min_size} samples, but only {num_items} are available for training"
        )
