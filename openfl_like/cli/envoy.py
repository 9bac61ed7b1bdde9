"""`fx envoy`: run a data owner's envoy and decide on the experiments it is offered."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from openfl_like.cli.options import metrics_options
from openfl_like.cli.pki import pki_dir_option
from openfl_like.pki import PkiStore

F = TypeVar("F", bound=Callable[..., Any])


def _name_option(func: F) -> F:
    return click.option(
        "-n", "--name", required=True,
        help="Envoy name: the CN of its envoy certificate; fills {name} in the configuration.",
    )(func)


def _config_option(func: F) -> F:
    return click.option(
        "-c", "--config", "config_file", required=True,
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help="The envoy's configuration (envoy.yaml: director address, workspace, data "
        "description, data contract, review_experiments).",
    )(func)


def _load(config_file: Path, name: str) -> Any:
    from openfl_like.plan.envoy_config import load_envoy_config

    return load_envoy_config(config_file, name)


@click.group()
def envoy() -> None:
    """Envoy: register this site's data with a director and run its experiments here."""


@envoy.command("start")
@_name_option
@_config_option
@pki_dir_option
@metrics_options
def start(name: str, config_file: Path, store: PkiStore, metrics_port: int | None,
          metrics_host: str | None) -> None:
    """Check the local data against the contract, register with the director, and run a
    collaborator for every experiment the director assigns, until stopped.

    Refuses to start (one line, non-zero exit) when the data does not fit the contract or the
    certificate is missing. With review_experiments: true each experiment waits for
    `fx envoy approve` or `fx envoy reject`. SIGTERM, SIGHUP or Ctrl-C stop it gracefully: its
    collaborators get SIGTERM and finish their current task; a second signal exits at once.
    With --metrics-port (or network.metrics_port in envoy.yaml, or FX_METRICS_PORT) it serves
    Prometheus /metrics, /healthz and /readyz over plain HTTP (see docs/operations.md).
    """
    from openfl_like.app.envoy import run_envoy
    from openfl_like.app.logfiles import write_log_file

    config = _load(config_file, name)
    write_log_file(config.workspace / "logs", f"envoy-{name}")
    run_envoy(config, name, pki_dir=store.root, handle_signals=True,
              metrics_port=metrics_port, metrics_host=metrics_host)
    click.echo(f"envoy {name} stopped", err=True)


@envoy.command("approve")
@click.argument("experiment")
@_name_option
@_config_option
def approve(experiment: str, name: str, config_file: Path) -> None:
    """Approve EXPERIMENT, which awaits this envoy's review: its collaborator starts.

    If the envoy is not running, the approval is recorded and applied at its next start.
    """
    from openfl_like.app.envoy import approve_experiment

    reply = approve_experiment(_load(config_file, name), name, experiment)
    click.echo(_decided(reply))


@envoy.command("reject")
@click.argument("experiment")
@_name_option
@_config_option
@click.option("--reason", required=True,
              help="Why (sent to the director; the experimenter sees it).")
def reject(experiment: str, name: str, config_file: Path, reason: str) -> None:
    """Reject EXPERIMENT, which awaits this envoy's review; the director is told why.

    If the envoy is not running, the rejection is recorded and sent at its next start.
    """
    from openfl_like.app.envoy import reject_experiment

    reply = reject_experiment(_load(config_file, name), name, experiment, reason)
    click.echo(_decided(reply))


@envoy.command("status")
@_name_option
@_config_option
@click.option("--json", "as_json", is_flag=True, default=False,
              help="Print the status as JSON.")
def status(name: str, config_file: Path, as_json: bool) -> None:
    """Ask the running envoy what it does: director, registration, experiments running and
    awaiting approval. Fails with one line if the envoy is not running."""
    from openfl_like.app.envoy import envoy_status

    reply = envoy_status(_load(config_file, name), name)
    reply.pop("ok", None)
    if as_json:
        click.echo(json.dumps(reply, indent=1, sort_keys=True))
        return
    click.echo(f"envoy {reply.get('envoy', name)}: director {reply.get('director', '?')}, "
               f"{'registered' if reply.get('registered') else 'not registered yet'}")
    counts = reply.get("sample_counts") or {}
    if counts:
        click.echo("samples: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    click.echo("running: " + (", ".join(reply.get("running", [])) or "-"))
    click.echo("awaiting approval: " + (", ".join(reply.get("awaiting_approval", [])) or "-"))


def _decided(reply: dict[str, Any]) -> str:
    text = f"{reply.get('experiment')}: {reply.get('decision')}"
    if reply.get("recorded"):
        text += " (recorded; the envoy applies it at its next start)"
    return text
