"""`fx experiment`: submit experiments to a director, follow them, fetch their models."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from openfl_like.cli.pki import pki_dir_option
from openfl_like.pki import PkiStore

if TYPE_CHECKING:
    from openfl_like.app.experimenter import Experimenter
    from openfl_like.core.experiments import ExperimentEvent

F = TypeVar("F", bound=Callable[..., Any])


def connection_options(func: F) -> F:
    """Where the director is and who we are: the same options on every subcommand."""
    options = [
        click.option("--director", "address", required=True, envvar="FX_DIRECTOR",
                     metavar="HOST:PORT",
                     help="The director's address (FX_DIRECTOR). The host must be in the "
                     "director certificate's SANs."),
        click.option("-u", "--user", required=True, envvar="FX_EXPERIMENTER",
                     help="Your experimenter name: the CN of your experimenter certificate in "
                     "the PKI store (FX_EXPERIMENTER)."),
        click.option("--director-name", default="director", show_default=True,
                     envvar="FX_DIRECTOR_NAME",
                     help="CN of the director's certificate (FX_DIRECTOR_NAME)."),
        click.option("--federation", default="default", show_default=True,
                     envvar="FX_DIRECTOR_FEDERATION",
                     help="The director's federation id, director.federation in its config "
                     "(FX_DIRECTOR_FEDERATION)."),
        pki_dir_option,
    ]
    for option in reversed(options):
        func = option(func)
    return func


@contextmanager
def _connect(address: str, user: str, director_name: str, federation: str,
             store: PkiStore) -> Iterator[Experimenter]:
    from openfl_like.app.experimenter import Experimenter

    with Experimenter.connect(address, name=user, pki_dir=store.root,
                              director_name=director_name, federation=federation) as lab:
        yield lab


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=1, sort_keys=True))


def _value(key: str, value: float) -> str:
    """Counts (samples, rounds) as integers, everything else with 4 decimals."""
    if (key == "rounds" or key.endswith("samples")) and float(value).is_integer():
        return str(int(value))
    return f"{value:.4f}"


def _shown(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={_value(k, v)}" for k, v in sorted(metrics.items()))


def describe_event(event: ExperimentEvent) -> str:
    """One plain line per event (what `metrics`/`logs` print when not on a terminal)."""
    kind = event.kind.value
    if kind == "metrics":
        where = f"round {event.round_number} {event.task}".strip()
        return f"[{event.source}] {where}: {_shown(event.metrics)}"
    if kind == "status":
        return f"[{event.source}] status: {event.text}"
    return f"[{event.source}] {event.text}"


@click.group()
def experiment() -> None:
    """Submit experiments to a director and follow them (you are an experimenter)."""


@experiment.command("submit")
@click.argument("plan_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Initial model (.keras, loaded in safe mode, or .npz weights); "
              "default: the plan's task_runner.params.model, if any.")
@click.option("--name", default=None,
              help="Experiment name (default: the director derives one from the plan).")
@click.option("--follow", is_flag=True, help="Then stream its metrics until it ends.")
@connection_options
def submit(plan_dir: Path, model: Path | None, name: str | None, follow: bool, address: str,
           user: str, director_name: str, federation: str, store: PkiStore) -> None:
    """Send PLAN_DIR/plan.yaml and its initial model to the director for training.

    The director checks the plan (registered components only; no 'module:attr' objects), the
    model (Keras safe mode) and the envoys' data contracts, then queues it; it starts as soon
    as a slot is free. Prints the experiment's name.
    """
    with _connect(address, user, director_name, federation, store) as lab:
        submitted = lab.submit(plan_dir, model=model, name=name)
        click.echo(f"submitted experiment {submitted}")
        if follow:
            _follow(lab, submitted, metrics_only=True, envoy=None, from_seq=1)


@experiment.command("validate")
@click.argument("plan_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--model", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              required=True, help="The model to evaluate (.keras or .npz).")
@click.option("--name", default=None, help="Experiment name (default: derived).")
@connection_options
def validate(plan_dir: Path, model: Path, name: str | None, address: str, user: str,
             director_name: str, federation: str, store: PkiStore) -> None:
    """Evaluate MODEL on every matching envoy's data (no training) and print the metrics,
    per envoy and weighted by their sample counts."""
    with _connect(address, user, director_name, federation, store) as lab:
        submitted = lab.validate(plan_dir, model, name=name)
        click.echo(f"submitted validation {submitted}")
        status = lab.wait(submitted)
    _print_status(status)
    if status.get("state") != "finished":
        raise click.ClickException(f"validation {submitted} {status.get('state')}: "
                                   f"{status.get('reason') or 'no reason given'}")


@experiment.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the raw list as JSON.")
@connection_options
def list_(as_json: bool, address: str, user: str, director_name: str, federation: str,
          store: PkiStore) -> None:
    """Your experiments, oldest first, with their state."""
    from rich.console import Console
    from rich.table import Table

    with _connect(address, user, director_name, federation, store) as lab:
        rows = lab.experiments()
    if as_json:
        _echo_json(rows)
        return
    table = Table("experiment", "kind", "state", "round", "envoys", "submitted")
    for row in rows:
        table.add_row(str(row.get("name")), str(row.get("kind", "")), str(row.get("state")),
                      f"{row.get('round', '-')}/{row.get('rounds_total', '-')}",
                      ", ".join(row.get("envoys") or []) or "-", str(row.get("created", "")))
    Console().print(table)


def _print_status(status: Mapping[str, Any]) -> None:
    click.echo(f"experiment {status.get('name')}: {status.get('state')}"
               + (f" ({status['reason']})" if status.get("reason") else ""))
    if status.get("rounds_total") is not None:
        click.echo(f"round {status.get('round', 0)} of {status.get('rounds_total')}")
    for envoy, info in sorted((status.get("envoys") or {}).items()):
        if isinstance(info, Mapping):
            state = info.get("state", "?")
            online = "" if info.get("online", True) else " (offline)"
            reason = f": {info['reason']}" if info.get("reason") else ""
            click.echo(f"  envoy {envoy}: {state}{online}{reason}")
            for line in info.get("last_log_lines") or []:
                click.echo(f"    | {line}")
    final = status.get("final_metrics") or {}
    if final:
        click.echo("final: " + _shown({k: v for k, v in final.items()
                                        if isinstance(v, (int, float))}))
    for envoy, metrics in sorted((status.get("validation") or {}).get("per_envoy", {}).items()):
        click.echo(f"  {envoy}: {_shown(metrics)}")
    weighted = (status.get("validation") or {}).get("weighted")
    if weighted:
        click.echo(f"  weighted: {_shown(weighted)}")


@experiment.command("status")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@connection_options
def status(name: str, as_json: bool, address: str, user: str, director_name: str,
           federation: str, store: PkiStore) -> None:
    """State, round, each envoy's part (and why one failed), the final metrics."""
    with _connect(address, user, director_name, federation, store) as lab:
        info = lab.status(name)
    if as_json:
        _echo_json(info)
    else:
        _print_status(info)


def _follow(lab: Experimenter, name: str, *, metrics_only: bool, envoy: str | None,
            from_seq: int) -> None:
    """Print events as they stream; a progress bar of rounds on a terminal."""
    total = lab.status(name).get("rounds_total")
    progress = None
    task_id = None
    if sys.stdout.isatty() and metrics_only and isinstance(total, int) and total > 0:
        from rich.progress import Progress

        progress = Progress(transient=False)
        progress.start()
        task_id = progress.add_task(f"{name}", total=total)
    try:
        for event in lab.events(name, from_seq):
            kind = event.kind.value
            if metrics_only and kind == "log":
                continue
            if not metrics_only and kind == "metrics":
                continue
            if envoy is not None and event.source != envoy:
                continue
            line = describe_event(event)
            if progress is not None and task_id is not None:
                progress.console.print(line)
                if kind == "metrics" and event.source == "aggregator":
                    progress.update(task_id, completed=min(event.round_number + 1, total))
            else:
                click.echo(line)
    finally:
        if progress is not None:
            progress.stop()
    final = lab.status(name)
    click.echo(f"experiment {name} {final.get('state')}"
               + (f": {final['reason']}" if final.get("reason") else ""))
    line = (final.get("final_metrics") or {})
    if line:
        click.echo("final: " + _shown({k: v for k, v in line.items()
                                        if isinstance(v, (int, float))}))


@experiment.command("metrics")
@click.argument("name")
@click.option("--from", "from_seq", type=click.IntRange(1), default=1, show_default=True,
              help="First event number to show (events are numbered from 1).")
@connection_options
def metrics(name: str, from_seq: int, address: str, user: str, director_name: str,
            federation: str, store: PkiStore) -> None:
    """Follow the experiment's metrics live (like `tail -f`) until it ends.

    Aggregated metrics per round from the aggregator, each envoy's task metrics, and state
    changes. Interrupting and running it again with --from N misses nothing."""
    with _connect(address, user, director_name, federation, store) as lab:
        _follow(lab, name, metrics_only=True, envoy=None, from_seq=from_seq)


@experiment.command("logs")
@click.argument("name")
@click.option("--envoy", default=None, help="Only this envoy's lines (default: every source).")
@click.option("--from", "from_seq", type=click.IntRange(1), default=1, show_default=True,
              help="First event number to show.")
@connection_options
def logs(name: str, envoy: str | None, from_seq: int, address: str, user: str,
         director_name: str, federation: str, store: PkiStore) -> None:
    """Follow the log lines of the aggregator and of every envoy's collaborator."""
    with _connect(address, user, director_name, federation, store) as lab:
        _follow(lab, name, metrics_only=False, envoy=envoy, from_seq=from_seq)


@experiment.command("model")
@click.argument("name")
@click.option("--best", "which", flag_value="best", default=True,
              help="The best model by the plan's best_model metric (default).")
@click.option("--last", "which", flag_value="last", help="The final model of the last round.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="File to write (.keras for Keras plans, .npz otherwise).")
@connection_options
def model(name: str, which: str, output: Path, address: str, user: str, director_name: str,
          federation: str, store: PkiStore) -> None:
    """Download the trained model (checked by its sha256 on arrival)."""
    with _connect(address, user, director_name, federation, store) as lab:
        path = lab.download_model(name, which, output)
    click.echo(f"wrote the {which} model of {name} to {path}")


@experiment.command("cancel")
@click.argument("name")
@click.option("--reason", default="", help="Why (shown to the envoys and in the status).")
@connection_options
def cancel(name: str, reason: str, address: str, user: str, director_name: str,
           federation: str, store: PkiStore) -> None:
    """Stop a queued or running experiment; its envoys stop their collaborators."""
    with _connect(address, user, director_name, federation, store) as lab:
        info = lab.cancel(name, reason)
    click.echo(f"experiment {name}: {info.get('state', 'cancelled')}")


@experiment.command("remove")
@click.argument("name")
@connection_options
def remove(name: str, address: str, user: str, director_name: str, federation: str,
           store: PkiStore) -> None:
    """Delete an ended experiment's files at the director (models, workspace)."""
    with _connect(address, user, director_name, federation, store) as lab:
        info = lab.remove(name)
    click.echo(f"experiment {name}: {info.get('state', 'removed')}")
