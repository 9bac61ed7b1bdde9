"""Write the keras_images example's data and initial model (generated files are git-ignored).

From scikit-learn's bundled digits (1797 images of 8x8 pixels, 16 grey levels; no download):

* ``data/test/``: a stratified held-out 20 % (the aggregator's test set, ``data/test.yaml``);
* ``data/site_a/``, ``site_b/``, ``site_c/``: the rest, dealt out per class by a seeded Dirichlet
  draw (alpha 1.0), so each site sees its own mix of digits (non-IID labels);
* ``model.keras``: a small CNN with input (16, 16, 1), softmax over the 10 classes.

Every image folder has one sub-folder per class, ``0`` .. ``9`` (the layout of Keras's
``image_dataset_from_directory``), holding 16x16 grayscale PNG files upscaled with Pillow.

The data part (:func:`write_data`) needs numpy, scikit-learn and Pillow; the model part
(:func:`write_model`) imports TensorFlow. Re-running rewrites the same folders (old files are
removed first) and keeps an existing ``model.keras`` (its bytes enter the plan digest;
``--force-model`` makes a new one).

    python plans/keras_images/make_data.py [--out DIR] [--no-model] [--force-model]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SITES = ("site_a", "site_b", "site_c")
CLASSES = tuple(str(d) for d in range(10))
IMAGE_SIZE = (16, 16)  # (height, width): the plan's data_contract.image_size
TEST_FRACTION = 0.2
ALPHA = 1.0  # Dirichlet concentration: smaller = more skewed class mixes per site


def _write_folder(root: Path, images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> None:
    """``root/<class>/<id>.png`` for every image; every class folder exists, even when empty."""
    from PIL import Image

    if root.exists():
        shutil.rmtree(root)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
    for image, label, ident in zip(images, labels, ids, strict=True):
        pixels = np.clip(np.rint(image * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        small = Image.fromarray(pixels)  # uint8, 2-D: Pillow mode "L" (grayscale)
        big = small.resize((IMAGE_SIZE[1], IMAGE_SIZE[0]), Image.Resampling.BILINEAR)
        big.save(root / CLASSES[int(label)] / f"{int(ident):04d}.png", optimize=False)


def write_data(out_dir: Path = HERE, *, seed: int = 0) -> dict[str, int]:
    """Write ``data/{site}/`` and ``data/test/`` under ``out_dir``; return images per folder."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)  # (n, 8, 8), values 0..16
    y = np.asarray(bunch.target, dtype=np.int64)
    rng = np.random.default_rng(seed)

    parts: dict[str, list[int]] = {name: [] for name in (*SITES, "test")}
    for cls in range(len(CLASSES)):
        members = rng.permutation(np.flatnonzero(y == cls))
        n_test = round(len(members) * TEST_FRACTION)
        parts["test"] += members[:n_test].tolist()
        rest = members[n_test:]
        shares = rng.dirichlet([ALPHA] * len(SITES))
        bounds = np.round(np.cumsum(shares)[:-1] * len(rest)).astype(int)
        for site, chunk in zip(SITES, np.split(rest, bounds), strict=True):
            parts[site] += chunk.tolist()

    data_dir = out_dir / "data"
    counts: dict[str, int] = {}
    for name, idx_list in parts.items():
        idx = np.sort(np.array(idx_list, dtype=np.int64))
        _write_folder(data_dir / name, images[idx], y[idx], idx)
        counts[name] = len(idx)
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
            keras.Input((*IMAGE_SIZE, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2, name="pool1"),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(2, name="pool2"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(64, activation="relu", name="fc"),
            keras.layers.Dropout(0.25, name="dropout"),
            keras.layers.Dense(len(CLASSES), activation="softmax", name="probs"),
        ],
        name="digits16_cnn",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    keras.saving.save_model(model, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="plan folder to write into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-model", action="store_true", help="write the image folders only")
    parser.add_argument("--force-model", action="store_true",
                        help="replace an existing model.keras (changes the plan digest)")
    args = parser.parse_args(argv)
    counts = write_data(args.out, seed=args.seed)
    print("images: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    if not args.no_model:
        target = args.out / "model.keras"
        made = write_model(target, seed=args.seed, force=args.force_model)
        print(f"{target}: {'written' if made else 'kept (--force-model replaces it)'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
