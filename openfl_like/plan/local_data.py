"""A site's data description (local YAML, never sent) -> ``LocalDataSpec``.

Example::

    loader: csv
    params:
      path: data/site_b-*.csv      # relative to this file; a glob is allowed for csv
      valid_fraction: 0.2
      seed: 7

Loader names and their parameters come from the explicit table below (no dotted paths), so a
typo is refused here with the file and key, before any data is read. Path parameters are
resolved against the folder of the description file, so the file can move with its data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import yaml

from openfl_like.core.errors import PlanError
from openfl_like.plan.load import _Section
from openfl_like.plan.registry import is_object_reference

ParamValue = str | int | float | bool | list[str | int | float | bool]

# Parameter kinds: "path" (resolved), "str", "int" (>= 0), "fraction" (0 < f < 1).
LOADER_PARAMS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "digits": {"shard": "int", "num_shards": "int", "seed": "int", "test_fraction": "fraction",
               "valid_fraction": "fraction", "method": "str"},
    "digits_test": {"seed": "int", "test_fraction": "fraction"},
    "npz": {"path": "path", "x_key": "str", "y_key": "str", "x_valid_key": "str",
            "y_valid_key": "str", "valid_path": "path", "valid_fraction": "fraction",
            "seed": "int"},
    "csv": {"path": "path", "valid_path": "path", "valid_fraction": "fraction", "seed": "int",
            "delimiter": "str"},
    "image_folder": {"path": "path", "valid_path": "path", "valid_fraction": "fraction",
                     "seed": "int"},
})
REQUIRED_PARAMS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "digits": ("shard", "num_shards"),
    "digits_test": (),
    "npz": ("path",),
    "csv": ("path",),
    "image_folder": ("path",),
})


@dataclass(frozen=True)
class LocalDataSpec:
    """Which loader reads this site's data, with what parameters (paths made absolute)."""

    loader: str
    params: Mapping[str, ParamValue]
    source: Path  # the description file itself, for error messages


def load_local_data_spec(path: str | Path) -> LocalDataSpec:
    """Read and validate one data description file."""
    file = Path(path).expanduser()
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: data description not found") from None
    except OSError as exc:
        raise PlanError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PlanError(f"{path}: invalid YAML{where}") from None
    return parse_local_data_spec(doc, source=file.resolve(), shown=str(path))


def parse_local_data_spec(doc: object, *, source: Path, shown: str | None = None) -> LocalDataSpec:
    """Validate a parsed description; ``shown`` is the file name used in messages."""
    root = _Section(shown or str(source), "", doc)
    raw_loader = root.raw.get("loader") if isinstance(root.raw, dict) else None
    if is_object_reference(raw_loader):
        return _custom_spec(root, str(raw_loader), source)
    loader = root.string("loader", choices=tuple(LOADER_PARAMS))
    params = root.section("params")
    kinds = LOADER_PARAMS[loader]
    values: dict[str, ParamValue] = {}
    for key in params.raw:
        kind = kinds.get(key) if isinstance(key, str) else None
        if kind is None:
            raise params.error(str(key), f"unknown parameter for loader {loader!r} "
                               f"(known: {', '.join(sorted(kinds))})")
        if params.raw[key] is None:
            continue
        if kind == "path":
            values[key] = str(source.parent / Path(params.string(key)).expanduser())
        elif kind == "str":
            values[key] = params.string(key)
        elif kind == "int":
            values[key] = params.integer(key, minimum=0)
        else:
            values[key] = params.number(key, minimum=0, maximum=1, exclusive_min=True,
                                        exclusive_max=True)
    for key in REQUIRED_PARAMS[loader]:
        if key not in values:
            raise params.error(key, f"is required for loader {loader!r}")
    if "valid_path" in values and "valid_fraction" in values:
        raise params.error("valid_fraction", "give valid_path or valid_fraction, not both")
    params.seen.update(params.raw)
    root.done()
    return LocalDataSpec(loader=loader, params=MappingProxyType(values), source=source)


def _custom_spec(root: _Section, loader: str, source: Path) -> LocalDataSpec:
    """A ``module:attr`` loader: its params pass through as given (numbers, strings, booleans),
    for the operator's own code to read. Importing it needs the plan's and the operator's
    consent (``app.data``); naming it here imports nothing."""
    params = root.section("params")
    values: dict[str, object] = {}
    for key, value in (params.raw or {}).items():
        if not isinstance(value, (str, int, float, bool)) or isinstance(key, bool):
            raise params.error(str(key), "a custom loader's params must be numbers, strings "
                               f"or booleans (got {type(value).__name__})")
        values[str(key)] = value
    root.seen.add("loader")
    params.seen.update(params.raw)
    root.done()
    return LocalDataSpec(loader=loader, params=MappingProxyType(values), source=source)
