"""`fx plan`: validate a plan, or run it as a whole federation on this host."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from openfl_like.cli.pki import pki_dir_option
from openfl_like.pki import PkiStore

TABLE_WIDTH = 80  # without a terminal; the table fits a terminal of 80 columns too
# (metric, column title): "val" is the global model on the sites' validation data, "local"
# the locally trained model on it.
_COLUMNS = (
    ("aggregated_model_validation/accuracy", "val\nacc"),
    ("aggregated_model_validation/loss", "val\nloss"),
    ("train/loss", "train\nloss"),
    ("train/accuracy", "train\nacc"),
    ("locally_tuned_model_validation/accuracy", "local\nacc"),
)


@click.group()
def plan() -> None:
    """Validate federation plans and run them locally."""


@plan.command("validate")
@click.argument("plan_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
def validate(plan_dir: Path) -> None:
    """Print the resolved plan (defaults filled in) and its digest, or the first error."""
    from openfl_like.plan.digest import plan_digest, plan_to_dict
    from openfl_like.plan.load import load_plan

    loaded = load_plan(plan_dir)
    click.echo(json.dumps(plan_to_dict(loaded), indent=2, default=str))
    click.echo(f"plan digest: {plan_digest(loaded)}")
    click.echo(f"federation uuid: {loaded.federation_uuid}")


@plan.command("run")
@click.argument("plan_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
@pki_dir_option
@click.option("--workspace", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for state, outputs and logs (default: the plan's workspace).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="Aggregator port (default: aggregator.port; 0 picks a free one).")
@click.option("--resume", is_flag=True,
              help="Continue the federation saved in the workspace instead of starting afresh.")
@click.option("--fresh", is_flag=True,
              help="Delete an unfinished run saved in the workspace (state/, outputs/, "
              "status.json) and start afresh; without it such a run is kept and refused.")
@click.option("--timeout", type=float, default=None,
              help="Give up (and stop every process) after this many seconds.")
def run(plan_dir: Path, store: PkiStore, workspace: Path | None, port: int | None,
        resume: bool, fresh: bool, timeout: float | None) -> None:
    """Run the whole federation on this host: the PKI it lacks, one aggregator and every
    collaborator of cols.yaml as separate processes over mutual TLS on 127.0.0.1.

    Shows progress per round, prints a metrics table, writes models, metrics (CSV, JSON,
    TensorBoard) and a plot into the workspace's outputs/, and ends with the final global
    model's held-out test accuracy. Process logs are in the workspace's logs/.

    \b
    The workspace's previous run:
      finished or failed: cleared (a log line says so)
      unfinished: refused; --resume continues it, --fresh deletes it
      still served by a live aggregator: refused; nothing is touched

    SIGTERM, SIGHUP or Ctrl-C stops every process it started (SIGTERM, then SIGKILL after
    10 s; a second signal kills them at once) and exits 128+signal; the saved state stays,
    so --resume continues.
    """
    from openfl_like.app.local_run import run_plan_locally
    from openfl_like.app.signals import StoppedBySignal
    from openfl_like.core.logging import get_logger
    from openfl_like.plan.load import load_plan

    if resume and fresh:
        raise click.UsageError("--resume and --fresh exclude each other: continue the saved "
                               "run, or delete it")

    console = Console(stderr=True)
    level = get_logger("cli").getEffectiveLevel()
    out = Console()
    # Without a terminal (a pipe, a log file): one plain line per round, no progress bar.
    plain = not (console.is_terminal and out.is_terminal)
    rounds = load_plan(plan_dir).aggregator.rounds_to_train if plain else 0
    if not out.is_terminal:
        out = Console(width=TABLE_WIDTH)
    progress = Progress(
        TextColumn("[bold]round {task.fields[rounds]}"), BarColumn(),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False,
    )
    task_id = progress.add_task("starting", total=None, rounds="-")

    def on_status(status: dict[str, Any]) -> None:
        if plain:
            return
        progress.start()  # first status: a refusal before it shows no empty bar (idempotent)
        total = float(status.get("rounds_to_train") or 0) or None
        last = status.get("last_round") or {}
        metrics = (last.get("metrics") or {}).get("aggregated_model_validation") or {}
        acc = metrics.get("accuracy")
        text = f"{status.get('phase', '')}"
        if acc is not None:
            text += f"  global val acc {acc:.3f} (round {last.get('round')})"
        if status.get("waiting_for"):
            text += f"  waiting for {', '.join(status['waiting_for'])}"
        done = min(float(status.get("round") or 0), total or 0)
        progress.update(task_id, total=total, completed=done, description=text,
                        rounds=f"{done:.0f}/{total or 0:.0f}")

    try:
        result = run_plan_locally(
            plan_dir, pki=store, workspace=workspace, port=port, resume=resume,
            fresh=fresh, log_level=_level_name(level), on_status=on_status,
            timeout=timeout, handle_signals=True,
            on_round=(lambda record: click.echo(round_line(record, rounds))) if plain else None,
        )
    except StoppedBySignal as exc:
        progress.stop()
        click.echo(f"fx: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    finally:
        progress.stop()
    out.print(_metrics_table(result.history))
    # Paths unwrapped (copy-pasteable), one per line.
    click.echo(f"outputs in {result.workspace.output_dir}")
    click.echo(f"logs in {result.workspace.logs_dir}")
    click.echo(f"federation finished in {result.seconds:.1f} s")
    from openfl_like.app.aggregator import final_metric_line

    line = final_metric_line(result.final_metrics)
    if line:
        click.echo(line)


def round_line(record: dict[str, Any], rounds: int) -> str:
    """One short line for a closed round (piped `fx plan run`), at most ~80 columns."""
    from openfl_like.federation.outputs import flatten_round

    row = flatten_round(record)
    number = int(row["round"])
    label = (f"round {number} ({number + 1} of {rounds})" if number < rounds
             else f"round {number} (final validation)")
    line = (f"{label}: {row.get('closed_by', '')}, {row.get('collaborators')} cols, "
            f"{float(row.get('duration_seconds', 0.0)):.1f} s")
    for key, title in _COLUMNS[:3]:
        value = row.get(key)
        part = f", {title.replace(chr(10), ' ')} {_number(value)}" if value is not None else ""
        if len(line) + len(part) <= TABLE_WIDTH:
            line += part
    return line


def _number(value: Any) -> str:
    """At most 7 characters for the usual metrics (accuracy, loss)."""
    number = float(value)
    return f"{number:.4f}" if abs(number) < 100 else f"{number:.4g}"


def _level_name(level: int) -> str:
    import logging

    return str(logging.getLevelName(level))


def _metrics_table(history: list[dict[str, Any]]) -> Table:
    from rich import box

    from openfl_like.federation.outputs import flatten_round

    # Light box and short numbers: 9 columns fit 80 (a piped run, or a terminal of 80).
    table = Table(title="metrics per round", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)
    table.add_column("round", justify="right", no_wrap=True)
    table.add_column("closed\nby", no_wrap=True)
    table.add_column("cols", justify="right", no_wrap=True)
    for _, title in _COLUMNS:
        table.add_column(title, justify="right", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)
    for record in history:
        row = flatten_round(record)
        cells = [str(row["round"]), str(row.get("closed_by", "")), str(row.get("collaborators"))]
        for key, _ in _COLUMNS:
            value = row.get(key)
            cells.append("-" if value is None else _number(value))
        cells.append(f"{float(row.get('duration_seconds', 0.0)):.1f}")
        table.add_row(*cells)
    return table
