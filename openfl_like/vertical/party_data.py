"""One vertical party's samples: its own feature columns of the shared samples (+ the labels at
the leader), and what both parties compare before training so they never train on mismatched
rows.

Sample order is part of the contract: row ``i`` of the follower's ``x`` must be the same sample
as row ``i`` of the leader's. ``ids`` make that checkable (:func:`ids_digest`), and the order in
which an epoch visits the rows is a pure function of (seed, epoch) (:func:`epoch_order`), so
both parties compute the same batches without sending indices.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openfl_like.core.errors import DataError
from openfl_like.core.vertical import PartyRole
from openfl_like.data.digits import IMAGE_SHAPE, load_digits_with_ids
from openfl_like.plan.vertical_config import PartyFiles, VerticalPlan

# digits: columns 0..3 of each 8x8 image at the follower, 4..7 at the leader.
_ROWS, _COLS = IMAGE_SHAPE
_HALF = _COLS // 2
FOLLOWER_COLUMNS = np.array([r * _COLS + c for r in range(_ROWS) for c in range(_HALF)])
LEADER_COLUMNS = np.array([r * _COLS + c for r in range(_ROWS) for c in range(_HALF, _COLS)])


@dataclass(frozen=True, eq=False)
class Split:
    """One data set of a party: ids (int64 or str), float32 features, int64 labels or None."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray | None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True, eq=False)
class PartyData:
    train: Split
    test: Split

    @property
    def num_features(self) -> int:
        return int(self.train.x.shape[1])


def load_party_data(plan: VerticalPlan, role: PartyRole) -> PartyData:
    """This party's train and test splits as the plan describes them."""
    settings = plan.data
    with_labels = role is PartyRole.LEADER
    if settings.source == "digits":
        train_ids, test_ids, x, y = load_digits_with_ids(seed=settings.seed,
                                                         test_fraction=settings.test_fraction)
        columns = LEADER_COLUMNS if with_labels else FOLLOWER_COLUMNS

        def part(ids: np.ndarray) -> Split:
            return Split(ids=ids, x=np.ascontiguousarray(x[ids][:, columns]),
                         y=np.asarray(y[ids]) if with_labels else None)

        return PartyData(train=part(train_ids), test=part(test_ids))
    files = settings.leader if with_labels else settings.follower
    assert isinstance(files, PartyFiles)  # the plan loader requires them for source npz
    train = load_npz_split(files.train, with_labels=with_labels,
                           num_classes=plan.model.num_classes)
    test = load_npz_split(files.test, with_labels=with_labels,
                          num_classes=plan.model.num_classes)
    if test.x.shape[1] != train.x.shape[1]:
        raise DataError(f"{files.test}: x has {test.x.shape[1]} features, the training file "
                        f"{train.x.shape[1]}")
    return PartyData(train=train, test=test)


def load_npz_split(path: Path, *, with_labels: bool, num_classes: int) -> Split:
    """``ids`` (1-D, unique, integers or strings), ``x`` (2-D numbers) and, at the leader,
    ``y`` (class indices). No pickle; every check names the file and the array."""
    try:
        raw = path.read_bytes()  # np.load(path) leaks its file handle on a non-zip file
    except FileNotFoundError:
        raise DataError(f"{path}: data file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz without pickled objects ({exc})") from None
    wanted = ("ids", "x", "y") if with_labels else ("ids", "x")
    for name in wanted:
        if name not in arrays:
            raise DataError(f"{path}: no array {name!r} (has: {', '.join(sorted(arrays))})")
    ids, x = arrays["ids"], arrays["x"]
    if ids.ndim != 1 or ids.dtype.kind not in "iuU" or ids.size == 0:
        raise DataError(f"{path}: ids must be a non-empty 1-D array of integers or strings "
                        f"(got {ids.dtype} of shape {ids.shape})")
    if np.unique(ids).size != ids.size:
        raise DataError(f"{path}: ids must be unique")
    if x.ndim != 2 or x.shape[0] != ids.size or x.dtype.kind not in "iuf":
        raise DataError(f"{path}: x must be numbers of shape ({ids.size}, features) "
                        f"(got {x.dtype} of shape {x.shape})")
    x32 = x.astype(np.float32)
    if not np.isfinite(x32).all():
        raise DataError(f"{path}: x holds NaN or infinite values")
    y = None
    if with_labels:
        raw = arrays["y"]
        if raw.shape != ids.shape or raw.dtype.kind not in "iu":
            raise DataError(f"{path}: y must be integer class indices of shape {ids.shape} "
                            f"(got {raw.dtype} of shape {raw.shape})")
        if raw.min() < 0 or raw.max() >= num_classes:
            raise DataError(f"{path}: y must lie in 0..{num_classes - 1} (model.num_classes)")
        y = raw.astype(np.int64)
    ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else ids
    return Split(ids=ids, x=x32, y=y)


def ids_digest(ids: np.ndarray) -> bytes:
    """sha256 of the ids in their order (ints as int64 little-endian, strings as UTF-8 each
    followed by a NUL), so equal digests mean the same samples in the same order."""
    h = hashlib.sha256()
    if ids.dtype.kind in "iu":
        h.update(b"int64:")
        h.update(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    else:
        h.update(b"str:")
        for item in ids.tolist():
            h.update(str(item).encode("utf-8") + b"\0")
    return h.digest()


def epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits the ``size`` rows: the same at both parties."""
    return np.random.default_rng([int(seed), int(epoch), 0x5E11]).permutation(size)
