"""`fx aggregator`: run a plan's aggregator, or show the status of one."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from openfl_like.cli.options import allow_custom_option, plan_dir_option, workspace_option
from openfl_like.cli.pki import pki_dir_option
from openfl_like.core.errors import FederationError
from openfl_like.pki import PkiStore


@click.group()
def aggregator() -> None:
    """Run the aggregator of a federation plan, or inspect a running one."""


@aggregator.command("start")
@plan_dir_option
@pki_dir_option
@workspace_option
@click.option("--host", default=None, help="Address to listen on (default: aggregator.host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="TCP port (default: aggregator.port; 0 picks a free one).")
@allow_custom_option
@click.option("--events-fd", type=click.IntRange(0), default=None, hidden=True,
              help="Write JSON lines (listening, each round, final) to this inherited file "
                   "descriptor: how a director follows the aggregators it starts.")
@click.option("--fresh", is_flag=True,
              help="Start a new run: move the previous one (state, outputs, status) to "
                   "WORKSPACE/archive/<time>/ first. Without it, an unfinished run is resumed "
                   "and a finished one is refused.")
def start(plan_dir: Path, store: PkiStore, workspace: Path | None, host: str | None,
          port: int | None, allow_custom: bool, events_fd: int | None, fresh: bool) -> None:
    """Serve the federation over mutual TLS until its last round; resume saved state if any.

    SIGTERM, SIGHUP or Ctrl-C stops it gracefully: no new work, in-flight uploads get a few
    seconds, the state is saved, collaborators are told to come back later, exit code 0.
    Starting it again resumes the federation. A second signal exits at once.

    The aggregator's certificate and key come from the PKI store under the plan's aggregator
    name (aggregator.name, default 'aggregator').
    """
    from openfl_like.app.aggregator import events_to_fd, final_metric_line, start_aggregator
    from openfl_like.app.signals import SignalStop
    from openfl_like.plan.load import load_plan

    plan = load_plan(plan_dir)
    events = events_to_fd(events_fd) if events_fd is not None else None
    running = start_aggregator(plan, pki=store, workspace=workspace, host=host, port=port,
                               allow_custom=allow_custom, events=events, fresh=fresh)
    # SIGTERM/SIGHUP/SIGINT: a graceful stop (the run loop sees the event); a second: now.
    with SignalStop(on_stop=lambda _sig: running.stop_requested.set()):
        final = running.run()
    if final.get("stopped"):
        click.echo(f"aggregator of {plan.federation.name} stopped; the state is saved and "
                   "`fx aggregator start` resumes it")
        return
    summary = ", ".join(f"{k}={v:.4f}" for k, v in final.items() if isinstance(v, float))
    click.echo(f"federation {plan.federation.name} finished: {summary or 'no test metrics'}")
    line = final_metric_line(final)
    if line:
        click.echo(line)


@aggregator.command("status")
@plan_dir_option
@workspace_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
def status(plan_dir: Path, workspace: Path | None, as_json: bool) -> None:
    """Phase, who the round waits for, who was dropped and why, each collaborator's declared
    samples, and the last metrics.

    Reads the status file the aggregator refreshes in its workspace every half second.
    """
    from openfl_like.app.common import Workspace
    from openfl_like.plan.load import load_plan

    ws = Workspace.for_plan(load_plan(plan_dir), workspace)
    try:
        data = json.loads(ws.status_path.read_text())
    except FileNotFoundError:
        raise FederationError(f"no aggregator status in {ws.root} (not started yet?)") from None
    except ValueError as exc:
        raise FederationError(f"{ws.status_path}: unreadable status ({exc})") from None
    if as_json:
        click.echo(json.dumps(data, indent=1))
        return
    console = Console()
    console.print(
        f"federation [bold]{data.get('federation')}[/] at {data.get('address')}: round "
        f"{data.get('round')} of {data.get('rounds_to_train')}, phase {data.get('phase')}, "
        f"{data.get('results_in')} result(s) in"
    )
    if data.get("failed"):
        console.print(f"[red]failed:[/] {data['failed']}")
    if data.get("disk_problem"):
        console.print(f"[red]disk:[/] {data['disk_problem']}")
    waiting = data.get("waiting_for") or []
    console.print(f"waiting for: {', '.join(waiting) if waiting else 'nobody'}")
    table = Table("collaborator", "active", "last seen (s ago)", "samples (train/valid)",
                  "pending tasks", "dropped")
    for name, info in sorted((data.get("collaborators") or {}).items()):
        seen = info.get("last_seen_seconds_ago")
        samples = info.get("samples") or {}
        table.add_row(name, "yes" if info.get("active") else "no",
                      "-" if seen is None else f"{seen:.1f}",
                      f"{samples.get('train', '-')}/{samples.get('valid', '-')}" if samples
                      else "-",
                      ", ".join(info.get("pending_tasks") or []) or "-",
                      info.get("dropped") or "-")
    console.print(table)
    last = data.get("last_round")
    if last:
        for task, metrics in sorted((last.get("metrics") or {}).items()):
            shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
            console.print(f"round {last.get('round')} {task}: {shown}")
