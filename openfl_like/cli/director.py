"""`fx director`: run a director, or list the envoys registered with one."""

from __future__ import annotations

import json
from pathlib import Path

import click

from openfl_like.cli.experiment import _connect, connection_options
from openfl_like.cli.options import metrics_options
from openfl_like.cli.pki import pki_dir_option
from openfl_like.pki import PkiStore


@click.group()
def director() -> None:
    """The long-running service that envoys register with and experimenters submit to."""


@director.command("start")
@click.option("-c", "--config", "config_path", required=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="director.yaml: name, listen address, workspace, aggregator port range, "
              "limits (see plans/director_digits/director.yaml).")
@pki_dir_option
@click.option("--host", default=None, help="Address to listen on (default: director.host).")
@click.option("--port", type=click.IntRange(0, 65535), default=None,
              help="TCP port (default: director.port).")
@metrics_options
def start(config_path: Path, store: PkiStore, host: str | None, port: int | None,
          metrics_port: int | None, metrics_host: str | None) -> None:
    """Serve envoys and experimenters over mutual TLS until SIGTERM or Ctrl-C.

    The registry of envoys and experiments lives in WORKSPACE/registry.sqlite; after a restart
    (also after kill -9) the experiments that were running resume from their aggregators' saved
    state, queued ones stay queued, and envoys and experimenters reconnect on their own.
    The director's certificate and key come from the PKI store under director.name; each
    experiment's aggregator presents the same certificate. With --metrics-port (or
    network.metrics_port in director.yaml, or FX_METRICS_PORT) it serves Prometheus /metrics,
    /healthz and /readyz over plain HTTP (see docs/operations.md).
    """
    from openfl_like.app.director import start_director
    from openfl_like.app.logfiles import write_log_file
    from openfl_like.app.signals import SignalStop
    from openfl_like.plan.director_config import load_director_config

    config = load_director_config(config_path)
    write_log_file(config.director.workspace / "logs", "director")
    running = start_director(config, pki=store, host=host, port=port,
                             metrics_port=metrics_port, metrics_host=metrics_host)
    name = config.director.name
    click.echo(f"director {name} listening on {running.server.address}", err=True)
    if running.ops is not None:
        click.echo(f"metrics on {running.ops.url}/metrics", err=True)
    with SignalStop(on_stop=lambda _sig: running.stop_requested.set()):
        running.run()
    click.echo(f"director {name} stopped; `fx director start` resumes it", err=True)


@director.command("envoys")
@click.option("--json", "as_json", is_flag=True, help="Print the raw list as JSON.")
@connection_options
def envoys(as_json: bool, address: str, user: str, director_name: str, federation: str,
           store: PkiStore) -> None:
    """Envoys with their datasets, whether they are online and their last heartbeat."""
    from rich.console import Console
    from rich.table import Table

    with _connect(address, user, director_name, federation, store) as lab:
        rows = lab.envoys()
    if as_json:
        click.echo(json.dumps(rows, indent=1, sort_keys=True))
        return
    table = Table("envoy", "status", "last heartbeat", "samples (train/valid)", "data",
                  "running")
    for row in rows:
        counts = row.get("sample_counts") or {}
        contract = row.get("contract") or {}
        seen = row.get("last_heartbeat_age_seconds")
        age = f"{float(seen):.1f} s ago" if isinstance(seen, (int, float)) else "-"
        data = f"{contract.get('features')} {contract.get('label', '')}".strip()
        table.add_row(str(row.get("name")), "online" if row.get("online") else "OFFLINE", age,
                      f"{counts.get('train', '-')}/{counts.get('valid', '-')}", data,
                      ", ".join(row.get("running_experiments") or []) or "-")
    Console().print(table)
