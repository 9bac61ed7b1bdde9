"""Write a plan folder and data descriptions from Python data (for the notebook API).

The inverse of ``load``: ``federate()`` builds a plan as a dict and lets this module put it on
disk in the very files `fx` reads, so the in-process run and the CLI run the same plan.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from openfl_like.core.fsutil import atomic_write


def write_plan_folder(folder: Path, plan: Mapping[str, Any], collaborators: Sequence[str],
                      data: Mapping[str, str | int]) -> Path:
    """plan.yaml, cols.yaml and data.yaml in ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "plan.yaml", yaml.safe_dump(dict(plan), sort_keys=False))
    atomic_write(folder / "cols.yaml", yaml.safe_dump({"collaborators": list(collaborators)}))
    atomic_write(folder / "data.yaml", yaml.safe_dump(dict(data), sort_keys=False))
    return folder


def write_data_description(path: Path, loader: str, params: Mapping[str, Any]) -> Path:
    """A site's data description (``local_data``): its loader and the loader's params."""
    atomic_write(path, yaml.safe_dump({"loader": loader, "params": dict(params)},
                                      sort_keys=False))
    return path
