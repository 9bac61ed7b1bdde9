"""Party data: the digits column split, ids digests, the epoch order, npz checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openfl_like.core.errors import DataError
from openfl_like.core.vertical import PartyRole
from openfl_like.plan.vertical_config import load_vertical_plan
from openfl_like.vertical.party_data import (
    FOLLOWER_COLUMNS,
    LEADER_COLUMNS,
    epoch_order,
    ids_digest,
    load_npz_split,
    load_party_data,
)

READY = Path(__file__).resolve().parents[3] / "plans" / "vertical_digits"


def test_digits_split_by_columns() -> None:
    # Prepare
    plan = load_vertical_plan(READY)
    # Execute
    leader = load_party_data(plan, PartyRole.LEADER)
    follower = load_party_data(plan, PartyRole.FOLLOWER)
    # Assert: the same samples, complementary columns, labels only at the leader
    np.testing.assert_array_equal(leader.train.ids, follower.train.ids)
    np.testing.assert_array_equal(leader.test.ids, follower.test.ids)
    assert leader.train.y is not None and follower.train.y is None
    assert leader.num_features == follower.num_features == 32
    assert sorted([*LEADER_COLUMNS, *FOLLOWER_COLUMNS]) == list(range(64))
    assert all(c % 8 < 4 for c in FOLLOWER_COLUMNS)
    assert len(leader.train) + len(leader.test) == 1797
    assert not set(leader.train.ids.tolist()) & set(leader.test.ids.tolist())


def test_ids_digest_depends_on_order_and_kind() -> None:
    ids = np.array([3, 1, 2])
    assert ids_digest(ids) == ids_digest(np.array([3, 1, 2], np.int32))
    assert ids_digest(ids) != ids_digest(np.array([1, 3, 2]))
    assert ids_digest(np.array(["a", "b"])) != ids_digest(np.array(["b", "a"]))
    assert ids_digest(np.array(["ab", "c"])) != ids_digest(np.array(["a", "bc"]))


def test_epoch_order_is_a_pure_function() -> None:
    first = epoch_order(0, 0, 100)
    np.testing.assert_array_equal(first, epoch_order(0, 0, 100))
    assert sorted(first.tolist()) == list(range(100))
    assert not np.array_equal(first, epoch_order(0, 1, 100))
    assert not np.array_equal(first, epoch_order(1, 0, 100))


def test_npz_split(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, ids=np.array(["a", "b"]), x=np.ones((2, 3)), y=np.array([0, 1]))
    split = load_npz_split(good, with_labels=True, num_classes=2)
    assert split.x.dtype == np.float32 and split.y is not None and len(split) == 2
    assert load_npz_split(good, with_labels=False, num_classes=2).y is None


@pytest.mark.parametrize(("arrays", "message"), [
    ({"x": np.ones((2, 3))}, "no array 'ids'"),
    ({"ids": np.array([1, 1]), "x": np.ones((2, 3)), "y": np.array([0, 1])}, "unique"),
    ({"ids": np.array([1, 2]), "x": np.ones((3, 3)), "y": np.array([0, 1])}, "x must be"),
    ({"ids": np.array([1, 2]), "x": np.array([[np.nan], [1]]), "y": np.array([0, 1])}, "NaN"),
    ({"ids": np.array([1, 2]), "x": np.ones((2, 3)), "y": np.array([0, 5])}, "0..1"),
    ({"ids": np.array([1.5, 2]), "x": np.ones((2, 3)), "y": np.array([0, 1])}, "ids must"),
])
def test_npz_mistakes_are_named(tmp_path: Path, arrays: dict[str, np.ndarray],
                                message: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match=message) as caught:
        load_npz_split(path, with_labels=True, num_classes=2)
    assert str(path) in caught.value.message


def test_npz_with_pickled_objects_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, ids=np.array([{"a": 1}, {"b": 2}], dtype=object), x=np.ones((2, 1)))
    with pytest.raises(DataError, match="without pickled objects"):
        load_npz_split(path, with_labels=False, num_classes=2)


def test_npz_source_per_party(tmp_path: Path) -> None:
    # Prepare: each party's own files, the same ids in the same order
    from openfl_like.plan.vertical_config import parse_vertical_plan

    ids = np.array(["s1", "s2", "s3"])
    for party, width in (("shop", 2), ("bank", 5)):
        for part in ("train", "test"):
            arrays = {"ids": ids, "x": np.ones((3, width))}
            if party == "shop":
                arrays["y"] = np.array([0, 1, 2])
            np.savez(tmp_path / f"{party}_{part}.npz", **arrays)  # type: ignore[arg-type]
    doc = {"session_id": "s", "leader": {"name": "shop", "address": "h:1"},
           "follower": {"name": "bank", "address": "h:2"},
           "data": {"source": "npz",
                    "leader": {"train": "shop_train.npz", "test": "shop_test.npz"},
                    "follower": {"train": "bank_train.npz", "test": "bank_test.npz"}}}
    plan = parse_vertical_plan(doc, plan_file=tmp_path / "plan.yaml")
    # Execute
    leader = load_party_data(plan, PartyRole.LEADER)
    follower = load_party_data(plan, PartyRole.FOLLOWER)
    # Assert
    assert leader.num_features == 2 and follower.num_features == 5
    assert ids_digest(leader.train.ids) == ids_digest(follower.train.ids)
    assert leader.test.y is not None and follower.test.y is None
