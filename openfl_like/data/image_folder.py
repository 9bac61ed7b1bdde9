"""``image_folder`` loader: one sub-folder per class (the layout Keras'
``image_dataset_from_directory`` reads), decoded with Pillow.

Images are resized to the contract's ``image_size``, converted to its ``color_mode`` and scaled to
[0, 1]. Sub-folders must be exactly the contract's classes and labels are their index in the
contract's list (not in alphabetical order), so every site maps a folder to the same index.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from openfl_like.core.errors import DataError
from openfl_like.data.dataset import ContractLike, LocalDataset, make_dataset

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
_PIL_MODES = {"grayscale": "L", "rgb": "RGB"}


def _class_folders(root: Path, contract: ContractLike) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"{root}/: not a folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [c for c in contract.classes if c not in found]
    extra = [f for f in found if f not in contract.classes]
    if missing or extra:
        parts = [f"missing {', '.join(repr(c) for c in missing)}"] if missing else []
        parts += [f"not in the plan {', '.join(repr(c) for c in extra)}"] if extra else []
        raise DataError(f"{root}/: {len(found)} classes found, the plan lists "
                        f"{len(contract.classes)}: {'; '.join(parts)}")
    return [root / c for c in contract.classes]


def _read_image(path: Path, size: tuple[int, int], mode: str) -> np.ndarray:
    from PIL import Image  # Pillow only when image folders are read

    try:
        with Image.open(path) as img:
            img.load()
            pixels = img.convert(_PIL_MODES[mode]).resize((size[1], size[0]))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    arr = np.asarray(pixels, dtype=np.float32) / np.float32(255.0)
    return arr.reshape(size[0], size[1], -1)


def _load(root: Path, contract: ContractLike) -> tuple[np.ndarray, np.ndarray]:
    if contract.image_size is None:
        raise DataError("the image_folder loader needs data_contract.image_size in the plan")
    mode = contract.color_mode or "grayscale"
    images: list[np.ndarray] = []
    labels: list[int] = []
    for index, folder in enumerate(_class_folders(root, contract)):
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                images.append(_read_image(path, contract.image_size, mode))
                labels.append(index)
    shape = (len(images), *contract.image_size, 1 if mode == "grayscale" else 3)
    x = np.stack(images).astype(contract.dtype) if images else np.zeros(shape, contract.dtype)
    return x, np.array(labels, dtype=np.int64)


def load_image_folder(params: Mapping[str, object], contract: ContractLike | None) -> LocalDataset:
    if contract is None:
        raise DataError("the image_folder loader needs the plan's data_contract "
                        "(classes, image_size)")
    root = Path(str(params["path"]))
    train = _load(root, contract)
    valid = _load(Path(str(params["valid_path"])), contract) if "valid_path" in params else None
    return make_dataset(params, train, valid, source=f"{root}/", loader="image_folder")
