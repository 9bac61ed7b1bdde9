"""Contracts and small files for the local-data tests, all made in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openfl_like.plan.schema import DataContract


@pytest.fixture
def tabular() -> DataContract:
    return DataContract(features=(3,), classes=("benign", "malignant"),
                        columns=("age", "size", "density"), label_column="diagnosis")


@pytest.fixture
def images() -> DataContract:
    return DataContract(features=(4, 5, 1), classes=("owl", "cat", "dog"), image_size=(4, 5),
                        color_mode="grayscale")


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [",".join(header)] + [",".join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good_rows(n: int, seed: int = 0) -> list[list[object]]:
    rng = np.random.default_rng(seed)
    return [[round(float(v), 3) for v in rng.normal(size=3)] + [("benign", "malignant")[i % 2]]
            for i in range(n)]


def write_png(path: Path, size: tuple[int, int] = (10, 8), mode: str = "L",
              value: int = 128) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=value if mode == "L" else (value, 0, 255)).save(path)
    return path
