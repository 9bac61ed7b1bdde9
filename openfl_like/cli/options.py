"""Options shared by the federation command groups."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def plan_dir_option(func: F) -> F:
    return click.option(
        "-p", "--plan", "plan_dir", required=True,
        type=click.Path(path_type=Path, file_okay=False, exists=True),
        help="Plan folder holding plan.yaml, cols.yaml and data.yaml.",
    )(func)


def workspace_option(func: F) -> F:
    return click.option(
        "--workspace", type=click.Path(path_type=Path, file_okay=False), default=None,
        help="Folder for state, outputs, status and logs (default: the plan's "
        "aggregator.workspace, relative to the plan folder).",
    )(func)


def allow_custom_option(func: F) -> F:
    return click.option(
        "--allow-custom-objects", "allow_custom", is_flag=True, default=False,
        help="Let the plan name installed Python objects as 'module:attr' (the plan must also "
        "set task_runner.allow_custom_objects). Off by default: a plan never makes this "
        "process import code unless you say so.",
    )(func)
