"""`fx aggregator`: run a plan's aggregator, or show the status of one."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from openfl_like.cli.options import (
    allow_custom_option,
    metrics_options,
    plan_dir_option,
    workspace_option,
)
from openfl_like.cli.pki import pki_dir_option
from openfl_like.core.errors import ConfigError, OpenflLikeError
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
@metrics_options
@click.option("--events-fd", type=click.IntRange(0), default=None, hidden=True,
              help="Write JSON lines (listening, each round, final) to this inherited file "
                   "descriptor: how a director follows the aggregators it starts.")
@click.option("--fresh", is_flag=True,
              help="Start a new run: move the previous one (state, outputs, status) to "
                   "WORKSPACE/archive/<time>/ first. Without it, an unfinished run is resumed "
                   "and a finished one is refused.")
def start(plan_dir: Path, store: PkiStore, workspace: Path | None, host: str | None,
          port: int | None, allow_custom: bool, metrics_port: int | None,
          metrics_host: str | None, events_fd: int | None, fresh: bool) -> None:
    """Serve the federation over mutual TLS until its last round; resume saved state if any.

    SIGTERM, SIGHUP or Ctrl-C stops it gracefully: no new work, in-flight uploads get a few
    seconds, the state is saved, collaborators are told to come back later, exit code 0.
    Starting it again resumes the federation. A second signal exits at once.

    The aggregator's certificate and key come from the PKI store under the plan's aggregator
    name (aggregator.name, default 'aggregator').
    """
    from openfl_like.app.aggregator import events_to_fd, final_metric_line, start_aggregator
    from openfl_like.app.common import Workspace
    from openfl_like.app.logfiles import write_log_file
    from openfl_like.app.signals import SignalStop
    from openfl_like.plan.load import load_plan

    plan = load_plan(plan_dir)
    write_log_file(Workspace.for_plan(plan, workspace).logs_dir, "aggregator")
    events = events_to_fd(events_fd) if events_fd is not None else None
    running = start_aggregator(plan, pki=store, workspace=workspace, host=host, port=port,
                               allow_custom=allow_custom, events=events, fresh=fresh,
                               metrics_port=metrics_port, metrics_host=metrics_host)
    # SIGTERM/SIGHUP/SIGINT: a graceful stop (the run loop sees the event); a second: now.
    with SignalStop(on_stop=lambda _sig: running.request_stop()):
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
@click.option("--aggregator", "address", default=None, metavar="HOST:PORT",
              help="Ask this aggregator over mutual TLS with an operator certificate; without "
                   "it, read the status file in the local workspace.")
@click.option("-n", "--name", "operator", default=None, envvar="FX_OPERATOR",
              help="Name of the operator certificate in the PKI store (for --aggregator; "
                   "FX_OPERATOR overrides the default).")
@pki_dir_option
@click.option("--json", "as_json", is_flag=True,
              help="Print the status as JSON (one line per refresh with --watch).")
@click.option("--watch", is_flag=True, help="Refresh until interrupted (Ctrl-C).")
@click.option("--interval", type=click.FloatRange(0.1), default=2.0, show_default=True,
              help="Seconds between refreshes with --watch.")
def status(plan_dir: Path, workspace: Path | None, address: str | None, operator: str | None,
           store: PkiStore, as_json: bool, watch: bool, interval: float) -> None:
    """Round, phase, who the round waits for and for how long, uploads in flight, each
    collaborator's declared samples, the last metrics and the time the round may still take.

    \b
    Local:   reads the status file the aggregator refreshes in its workspace every half second;
             once it has stopped, says so and shows the final result.
    Remote:  --aggregator HOST:PORT -n OPERATOR asks a running aggregator (GetStatus) with a
             certificate of the operator role (fx pki certify --name OPS --role operator).
    """
    from openfl_like.app.operator import local_status, remote_status
    from openfl_like.plan.load import load_plan

    plan = load_plan(plan_dir)
    if address is not None and not operator:
        raise ConfigError("--aggregator needs the operator certificate's name: -n NAME or "
                          "FX_OPERATOR")

    def fetch() -> dict[str, Any]:
        if address is None:
            return local_status(plan, workspace)
        return remote_status(plan, pki=store, address=address, operator=operator or "")

    if not watch:
        data = fetch()
        if as_json:
            click.echo(json.dumps(data, indent=1))
        else:
            Console().print(render_status(data))
        return
    _watch(fetch, as_json=as_json, interval=interval)


def _watch(fetch: Callable[[], dict[str, Any]], *, as_json: bool, interval: float) -> None:
    """Refresh in place on a terminal (rich Live), else one block (or JSON line) per refresh;
    a failed fetch is shown and retried at the next refresh."""
    console = Console()
    live = console.is_terminal and not as_json

    def view() -> tuple[RenderableType, str]:
        try:
            data = fetch()
        except OpenflLikeError as exc:
            return Text(f"error: {exc.message}", style="red"), json.dumps({"error": exc.message})
        return render_status(data), json.dumps(data)

    with contextlib.suppress(KeyboardInterrupt):
        if live:
            with Live(view()[0], console=console, auto_refresh=False) as screen:
                while True:
                    time.sleep(interval)
                    screen.update(view()[0], refresh=True)
        while True:
            shown, line = view()
            if as_json:
                click.echo(line)
            else:
                console.print(shown)
                console.print()
            time.sleep(interval)


def _seconds(value: object) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.1f} s"


def render_status(data: dict[str, Any]) -> RenderableType:
    """The status as a rich block: header lines, the collaborators' table, the metrics."""
    lines: list[RenderableType] = []
    running = data.get("running", True)
    lines.append(Text.from_markup(
        f"federation [bold]{data.get('federation')}[/] at {data.get('address')}: round "
        f"{data.get('round')} of {data.get('rounds_to_train')}, phase {data.get('phase')}, "
        f"{data.get('results_in')} result(s) in"))
    if not running:
        stale = data.get("stale_seconds")
        why = (f"its status file was last updated {stale:.0f} s ago" if stale
               else "it has stopped")
        lines.append(Text(f"the aggregator is not running: {why}", style="yellow"))
    if data.get("failed"):
        lines.append(Text(f"failed: {data['failed']}", style="red"))
    if data.get("disk_problem"):
        lines.append(Text(f"disk: {data['disk_problem']}", style="red"))
    waiting = data.get("waiting_for") or []
    if running and waiting:
        lines.append(Text(f"waiting for: {', '.join(waiting)} (for "
                          f"{_seconds(data.get('waiting_seconds'))})"))
    elif running:
        lines.append(Text("waiting for: nobody"))
    estimate = data.get("estimate") or {}
    if running and estimate.get("round_remaining_seconds") is not None:
        deadline = data.get("deadline_in_seconds")
        lines.append(Text(
            f"round may end in ~{_seconds(estimate['round_remaining_seconds'])} (median round "
            f"{_seconds(estimate.get('median_round_seconds'))}"
            + (f", deadline in {_seconds(deadline)}" if deadline is not None else "")
            + f"); federation in ~{_seconds(estimate.get('federation_remaining_seconds'))}"))
    uploads = data.get("uploads_in_flight") or {}
    table = Table("collaborator", "active", "last seen (s ago)", "samples (train/valid)",
                  "pending tasks", "uploading", "dropped")
    for name, info in sorted((data.get("collaborators") or {}).items()):
        seen = info.get("last_seen_seconds_ago")
        samples = info.get("samples") or {}
        upload = uploads.get(name)
        table.add_row(name, "yes" if info.get("active") else "no",
                      "-" if seen is None else f"{seen:.1f}",
                      f"{samples.get('train', '-')}/{samples.get('valid', '-')}" if samples
                      else "-",
                      ", ".join(info.get("pending_tasks") or []) or "-",
                      f"{upload['bytes'] / 1e6:.1f}MB/{upload['seconds']:.0f}s" if upload
                      else "-",
                      info.get("dropped") or "-")
    lines.append(table)
    last = data.get("last_round")
    if last:
        for task, metrics in sorted((last.get("metrics") or {}).items()):
            shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
            lines.append(Text(f"round {last.get('round')} {task}: {shown}"))
    final = data.get("final_metrics")
    if final:
        shown = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in sorted(final.items()))
        lines.append(Text(f"final result: {shown}", style="bold"))
    return Group(*lines)
