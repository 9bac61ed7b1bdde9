"""The plan's ``data_contract:`` section -> ``DataContract``, and the contract's digest.

The digest is what sites will compare at the handshake: two sites with the same digest read
features of the same shape and dtype and map labels to the same indices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import TYPE_CHECKING, Any

from openfl_like.plan.schema import DataContract

if TYPE_CHECKING:
    from openfl_like.plan.load import _Section

DTYPES: tuple[str, ...] = ("float16", "float32", "float64")
LABEL_KINDS: tuple[str, ...] = ("classes", "regression")
COLOR_MODES: dict[str, int] = {"grayscale": 1, "rgb": 3}  # mode -> channels


def _positive_ints(s: _Section, key: str, *, length: int | None = None) -> tuple[int, ...]:
    raw = s.get(key)
    ok = isinstance(raw, list) and raw and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw
    )
    if not ok or (length is not None and len(raw) != length):
        size = f"{length} " if length is not None else ""
        raise s.error(key, f"must be a list of {size}integers > 0 (got {raw!r})")
    return tuple(raw)


def _names(s: _Section, key: str) -> tuple[str, ...]:
    raw = s.get(key, [])
    if not isinstance(raw, list):
        raise s.error(key, f"must be a list of names (got {raw!r})")
    names: list[str] = []
    for index, value in enumerate(raw):
        if not isinstance(value, str) or not value:
            raise s.error(f"{key}[{index}]", f"must be a non-empty string (got {value!r}); "
                          "quote numbers, e.g. '0'")
        if value in names:
            raise s.error(f"{key}[{index}]", f"duplicate name {value!r}")
        names.append(value)
    return tuple(names)


def parse_data_contract(s: _Section) -> DataContract:
    """Validate one ``data_contract`` mapping; cross-checks name the key that is off."""
    d = DataContract(features=())
    features = _positive_ints(s, "features")
    label = s.string("label", d.label, choices=LABEL_KINDS)
    classes = _names(s, "classes")
    if label == "classes" and len(classes) < 2:
        raise s.error("classes", "must list at least 2 class names for label: classes")
    if label == "regression" and classes:
        raise s.error("classes", "applies to label: classes only")
    image_size = _positive_ints(s, "image_size", length=2) if "image_size" in s.raw else None
    color_mode = None
    if "color_mode" in s.raw:
        color_mode = s.string("color_mode", choices=tuple(COLOR_MODES))
    if image_size is not None:
        color_mode = color_mode or "grayscale"
        expected = [*image_size, COLOR_MODES[color_mode]]
        if list(features) != expected:
            raise s.error("features", f"must be {expected} for image_size {list(image_size)} "
                          f"and color_mode {color_mode} (got {list(features)})")
    elif color_mode is not None:
        raise s.error("color_mode", "applies with image_size only")
    columns = _names(s, "columns")
    label_column = s.string("label_column", d.label_column)
    if columns and list(features) != [len(columns)]:
        raise s.error("features", f"must be [{len(columns)}] for the {len(columns)} columns "
                      f"(got {list(features)})")
    if label_column in columns:
        raise s.error("columns", f"must not include the label column {label_column!r}")
    contract = DataContract(
        features=features,
        dtype=s.string("dtype", d.dtype, choices=DTYPES),
        label=label,
        classes=classes,
        image_size=(image_size[0], image_size[1]) if image_size else None,
        color_mode=color_mode,
        columns=columns,
        label_column=label_column,
    )
    s.done()
    return contract


def contract_to_dict(contract: DataContract) -> dict[str, Any]:
    """JSON-able form (tuples as lists), stable across Python versions."""
    data = dataclasses.asdict(contract)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def contract_digest(contract: DataContract) -> str:
    """sha256 (hex) of the canonical JSON of the contract (sorted keys, no spaces)."""
    canonical = json.dumps(contract_to_dict(contract), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
