"""The ready examples under plans/: import their make_data.py and copy a plan into tmp_path."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

PLANS = Path(__file__).resolve().parents[3] / "plans"
EXAMPLES = ("keras_tabular", "keras_images")


def load_make_data(example: str) -> ModuleType:
    """plans/<example>/make_data.py as a module (the scripts are not part of the package)."""
    path = PLANS / example / "make_data.py"
    name = f"_example_{example}_make_data"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and friends look the module up by name
    spec.loader.exec_module(module)
    return module


def copy_plan(example: str, target: Path) -> Path:
    """The example's committed files (YAML only: plan, cols, data, data descriptions)."""
    source = PLANS / example
    for path in [*source.glob("*.yaml"), *source.glob("data/*.yaml")]:
        dest = target / path.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    return target
