"""Write the keras_tabular example's data and initial model (generated files are git-ignored).

From scikit-learn's bundled breast-cancer data set (569 rows, 30 features; no download):

* ``data/test.csv``: a stratified held-out 15 % (the aggregator's test set, ``data/test.yaml``);
* ``data/site_a.csv``, ``site_b.csv``, ``site_c.csv``: the rest, sorted by 'mean radius' and cut
  into three unequal chunks (50 %, 30 %, 20 %), so the sites are non-IID: small tumours (mostly
  benign) at site_a, large ones (mostly malignant) at site_c;
* ``model.keras``: a small Dense MLP over the 30 features, softmax over the 2 classes.

Features are standardised with the mean and standard deviation of the full data set, so the model
needs no Normalization layer. Labels are the class names ``malignant`` / ``benign``.

The data part (:func:`write_data`) needs numpy and scikit-learn only; the model part
(:func:`write_model`) imports TensorFlow. Re-running rewrites the same CSVs byte for byte and keeps
an existing ``model.keras`` (its bytes enter the plan digest; ``--force-model`` makes a new one).

    python plans/keras_tabular/make_data.py [--out DIR] [--no-model] [--force-model]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SITES: dict[str, float] = {"site_a": 0.5, "site_b": 0.3, "site_c": 0.2}  # share of the rest
TEST_FRACTION = 0.15
CLASSES = ("malignant", "benign")  # scikit-learn's target order: 0 malignant, 1 benign
LABEL_COLUMN = "label"
SORT_FEATURE = "mean radius"
NUM_FEATURES = 30  # the plan's data_contract.features


def column_name(feature: str) -> str:
    """'mean radius' -> 'mean_radius' (header cells without spaces)."""
    return feature.replace(" ", "_")


def _write_csv(path: Path, header: list[str], x: np.ndarray, y: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.partial")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        for row, label in zip(x, y, strict=True):
            writer.writerow([f"{v:.6f}" for v in row] + [CLASSES[int(label)]])
    tmp.replace(path)


def write_data(out_dir: Path = HERE, *, seed: int = 0) -> dict[str, int]:
    """Write ``data/{site}.csv`` and ``data/test.csv`` under ``out_dir``; return rows per file."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    names = [str(n) for n in bunch.feature_names]
    assert tuple(bunch.target_names) == CLASSES and len(names) == NUM_FEATURES
    x = (x - x.mean(axis=0)) / x.std(axis=0)  # full data's statistics, as the docstring says

    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for cls in range(len(CLASSES)):  # stratified hold-out
        members = rng.permutation(np.flatnonzero(y == cls))
        test_idx += members[: round(len(members) * TEST_FRACTION)].tolist()
    test = np.sort(np.array(test_idx))
    rest = np.setdiff1d(np.arange(len(y)), test)
    # Non-IID: sort the rest by one feature (stable, so ties keep their order) and cut it.
    rest = rest[np.argsort(x[rest, names.index(SORT_FEATURE)], kind="stable")]
    bounds = np.cumsum([round(len(rest) * share) for share in SITES.values()])[:-1]

    header = [column_name(n) for n in names] + [LABEL_COLUMN]
    data_dir = out_dir / "data"
    counts: dict[str, int] = {}
    for site, idx in zip(SITES, np.split(rest, bounds), strict=True):
        idx = np.sort(idx)
        _write_csv(data_dir / f"{site}.csv", header, x[idx], y[idx])
        counts[site] = len(idx)
    _write_csv(data_dir / "test.csv", header, x[test], y[test])
    counts["test"] = len(test)
    return counts


def write_model(path: Path = HERE / "model.keras", *, seed: int = 0, force: bool = False) -> bool:
    """Save the initial model (uncompiled; the plan says how to train it). False: kept as is."""
    if path.exists() and not force:
        return False
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((NUM_FEATURES,), name="features"),
            keras.layers.Dense(32, activation="relu", name="hidden1"),
            keras.layers.Dense(16, activation="relu", name="hidden2"),
            keras.layers.Dense(len(CLASSES), activation="softmax", name="probs"),
        ],
        name="tabular_mlp",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.saving.save_model(model, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="plan folder to write into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-model", action="store_true", help="write the CSV files only")
    parser.add_argument("--force-model", action="store_true",
                        help="replace an existing model.keras (changes the plan digest)")
    args = parser.parse_args(argv)
    counts = write_data(args.out, seed=args.seed)
    print("rows: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    if not args.no_model:
        target = args.out / "model.keras"
        made = write_model(target, seed=args.seed, force=args.force_model)
        print(f"{target}: {'written' if made else 'kept (--force-model replaces it)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
