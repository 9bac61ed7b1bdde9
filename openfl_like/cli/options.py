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


def metrics_options(func: F) -> F:
    """``--metrics-port`` and ``--metrics-host``: the HTTP port of /metrics, /healthz, /readyz."""
    func = click.option(
        "--metrics-host", default=None, metavar="ADDRESS",
        help="Address of the metrics port (default: network.metrics_host, else 127.0.0.1). "
        "The port is unauthenticated: another address is logged as a warning.",
    )(func)
    return click.option(
        "--metrics-port", type=click.IntRange(0, 65535), default=None,
        help="Serve Prometheus /metrics, /healthz and /readyz over HTTP on this port (0: a free "
        "one, logged). Default: network.metrics_port or FX_METRICS_PORT; off without them.",
    )(func)
