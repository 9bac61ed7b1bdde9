"""`fx collaborator`: run one collaborator of a plan."""

from __future__ import annotations

from pathlib import Path

import click

from openfl_like.cli.options import (
    allow_custom_option,
    metrics_options,
    plan_dir_option,
    workspace_option,
)
from openfl_like.cli.pki import pki_dir_option
from openfl_like.pki import PkiStore


@click.group()
def collaborator() -> None:
    """Run a collaborator: train on local data, share only model updates."""


@collaborator.command("start")
@click.option("-n", "--name", required=True,
              help="Collaborator name: must be in cols.yaml and be the CN of its certificate.")
@plan_dir_option
@pki_dir_option
@workspace_option
@click.option("--aggregator", "aggregator_address", default=None, metavar="HOST:PORT",
              help="Aggregator address (default: aggregator.host and aggregator.port of the "
              "plan). The host must be in the aggregator certificate's SANs.")
@click.option("--cert", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Certificate file (default: certs/NAME.crt in the PKI store).")
@click.option("--key", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Private key file (default: private/NAME.key in the PKI store).")
@click.option("--ca-bundle", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="CA bundle to trust (default: ca/ca-bundle.pem in the PKI store).")
@click.option("--data", "data_file", type=click.Path(path_type=Path, dir_okay=False),
              default=None,
              help="This site's data description (YAML: loader and params; stays local). "
              "Default: the collaborator's data.yaml entry (a shard index or such a file).")
@click.option("--events-fd", "events_fd", type=click.IntRange(min=3), default=None,
              metavar="FD",
              help="An inherited file descriptor (e.g. an envoy's pipe) that receives one JSON "
              'line per finished task: {"round": R, "task": T, "metrics": {...}, '
              '"samples": N}.')
@allow_custom_option
@metrics_options
def start(name: str, plan_dir: Path, store: PkiStore, workspace: Path | None,
          aggregator_address: str | None, cert: Path | None, key: Path | None,
          ca_bundle: Path | None, data_file: Path | None, events_fd: int | None,
          allow_custom: bool, metrics_port: int | None, metrics_host: str | None) -> None:
    """Join the federation, long-poll for tasks and run them until the federation ends.

    Exits 0 with a summary when the aggregator says the federation is over; exits non-zero with
    one line when refused (unknown name, bad certificate, plan mismatch, data that does not
    match the plan's data_contract).

    SIGTERM, SIGHUP or Ctrl-C stop it gracefully: a wait for work ends at once, a task in
    progress finishes and its result is sent. It then exits 0 (being told to stop is not a
    failure) with one line; starting it again rejoins the federation (the aggregator accepts
    the new process once the old one has been silent for FX_INSTANCE_TAKEOVER_SECONDS, 30 s by
    default). A second signal exits at once (128+signal).
    """
    from openfl_like.app.collaborator import FdEventWriter, run_collaborator
    from openfl_like.app.common import Workspace
    from openfl_like.app.logfiles import write_log_file
    from openfl_like.app.signals import StoppedBySignal
    from openfl_like.plan.load import load_plan
    from openfl_like.transport.credentials import TlsFiles

    plan = load_plan(plan_dir)
    write_log_file(Workspace.for_plan(plan, workspace).logs_dir, f"collaborator-{name}")
    files = None
    if cert or key or ca_bundle:
        files = TlsFiles(
            cert_path=cert or store.cert_path(name), key_path=key or store.key_path(name),
            ca_bundle_path=ca_bundle or store.ca_bundle_path,
        )
    events = FdEventWriter(events_fd) if events_fd is not None else None
    try:
        summary = run_collaborator(
            plan, name, pki=store, aggregator_address=aggregator_address, tls_files=files,
            workspace=workspace, allow_custom=allow_custom, handle_signals=True,
            data_file=data_file, events=events, metrics_port=metrics_port,
            metrics_host=metrics_host,
        )
    except StoppedBySignal as exc:
        click.echo(f"collaborator {name} stopped by {exc.signum.name}; start it again to rejoin",
                   err=True)
        return
    finally:
        if events is not None:
            events.close()
    click.echo(summary.describe())
