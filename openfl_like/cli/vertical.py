"""`fx vertical`: two-party vertical federated learning (docs/vertical.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from openfl_like.cli.pki import pki_dir_option
from openfl_like.pki import PkiStore

_PLAN_HELP = ("The vertical plan: a folder holding plan.yaml, or the file itself "
              "(e.g. plans/vertical_digits).")


def _plan_option(func):  # type: ignore[no-untyped-def]
    return click.option("-p", "--plan", "plan_path", required=True,
                         type=click.Path(path_type=Path, exists=True), help=_PLAN_HELP)(func)


def _echo(line: str) -> None:
    click.echo(line)


@click.group()
def vertical() -> None:
    """Two parties hold different features of the same samples and train one split model.

    \b
    Both on this machine (certificates made if missing):
      fx vertical run --plan plans/vertical_digits
    One party per host (each with its party certificate from `fx pki`):
      fx vertical start --role leader   --plan plans/vertical_digits
      fx vertical start --role follower --plan plans/vertical_digits
    """


@vertical.command("start")
@click.option("--role", type=click.Choice(["leader", "follower"]), required=True,
              help="Which side this process is: the leader holds the labels and the top model "
              "and decides the checkpoint and the samples; the follower holds a bottom model.")
@_plan_option
@pki_dir_option
@click.option("--workspace", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder for this party's checkpoints, model.keras, result.json and logs "
              "(default: the plan's workspace/<party name>).")
@click.option("--fresh", is_flag=True, default=False,
              help="Delete this party's checkpoints first. The pair resumes from the newest "
              "checkpoint both hold, so a fresh party makes both start over.")
def start(role: str, plan_path: Path, store: PkiStore, workspace: Path | None,
          fresh: bool) -> None:
    """Run one party until training and evaluation are done.

    Either party may start first: each listens on its own address (leader/follower.listen)
    and connects to the other's (address) within timeouts.connect_ms, over mutual TLS with
    the party certificate named like the party (FX_VERTICAL_CERT, FX_VERTICAL_KEY and
    FX_VERTICAL_CA override the PKI store's files). Both check they hold the same samples in the
    same order, agree on the newest common checkpoint, train, and print
    'final test accuracy: X'.

    SIGTERM or Ctrl-C stop at the next step; the peer is told and fails at once. Exits
    non-zero with one line when the peer is gone, an operation times out
    (timeouts.default_ms) or the data or plan differ from the peer's.
    """
    from openfl_like.app.vertical import run_party
    from openfl_like.plan.vertical_config import load_vertical_plan

    plan = load_vertical_plan(plan_path)
    result = run_party(plan, role, workspace=workspace, pki_dir=store.root, fresh=fresh,
                       progress=_echo)
    click.echo(f"final test accuracy: {result.test_accuracy:.4f} ({result.name}, "
               f"{result.steps} steps, {result.seconds:.1f} s; model: {result.model_file})")


@vertical.command("run")
@_plan_option
@pki_dir_option
@click.option("--fresh", is_flag=True, default=False,
              help="Start both parties over (delete their checkpoints) instead of resuming "
              "from the newest common checkpoint.")
@click.pass_context
def run(ctx: click.Context, plan_path: Path, store: PkiStore, fresh: bool) -> None:
    """Run both parties of a plan on this machine, each as its own `fx vertical start`.

    Creates the CA and the two party certificates in --pki-dir when missing, streams both
    parties' output prefixed with [name], and prints the final test accuracy. Exits non-zero
    when either party fails. SIGTERM or Ctrl-C stop both (a second one kills them).
    """
    from openfl_like.app.vertical_local import run_both
    from openfl_like.plan.vertical_config import load_vertical_plan

    plan = load_vertical_plan(plan_path)
    root = ctx.find_root()
    level = root.params.get("log_level") or "INFO"
    result = run_both(plan, pki_dir=store.root, fresh=fresh, log_level=level, echo=_echo)
    click.echo(f"vertical run finished in {result.seconds:.1f} s: final test accuracy: "
               f"{result.test_accuracy:.4f}")
    sys.stdout.flush()
