"""Read one YAML file for the plan loaders: every failure is one PlanError naming the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from openfl_like.core.errors import PlanError


def read_yaml(file: Path, *, shown: str, missing: str) -> object:
    """The parsed document of ``file`` (``yaml.safe_load``: plain data, never objects).

    ``shown`` names the file in messages; ``missing`` is the whole message when it does not
    exist (each loader says what was looked for and where)."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(missing) from None
    except OSError as exc:
        raise PlanError(f"{shown}: cannot be read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise PlanError(f"{shown}: invalid YAML{where}: {problem}") from None
