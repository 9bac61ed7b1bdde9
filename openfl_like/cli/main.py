"""`fx`: the command-line shell over the openfl_like library.

Sub-groups are loaded lazily so `fx --help` and `fx pki ...` never import grpc or TensorFlow.
Every OpenflLikeError becomes one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from openfl_like.core.errors import OpenflLikeError
from openfl_like.core.logging import FORMAT_ENV, LOG_FORMATS, configure_logging
from openfl_like.core.parent import die_with_parent_from_env

# name -> (module, attribute, short help); the module is imported only when the group is used.
_SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "pki": ("openfl_like.cli.pki", "pki", "Certificates: CA, CSR, signing, verification, CRL."),
    "plan": ("openfl_like.cli.plan", "plan", "Validate and run federation plans."),
    "aggregator": ("openfl_like.cli.aggregator", "aggregator", "Run or inspect an aggregator."),
    "data": ("openfl_like.cli.data", "data", "Check this site's data against the plan."),
    "collaborator": (
        "openfl_like.cli.collaborator", "collaborator", "Run a collaborator of a plan.",
    ),
    "director": (
        "openfl_like.cli.director", "director", "Run a director; list its envoys.",
    ),
    "experiment": (
        "openfl_like.cli.experiment", "experiment",
        "Submit experiments to a director, follow them, fetch models.",
    ),
    "envoy": (
        "openfl_like.cli.envoy", "envoy",
        "Run a site's envoy for a director; approve or reject its experiments.",
    ),
    "vertical": (
        "openfl_like.cli.vertical", "vertical",
        "Two-party vertical learning: run a leader or a follower, or both locally.",
    ),
}


class LazyGroup(click.Group):
    """A group whose sub-groups are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("openfl_like.cli"):
                return None  # that group is not part of this build yet
            raise
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Log verbosity (default INFO, or the FX_LOG_LEVEL environment variable).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS, case_sensitive=False),
    default=None,
    help="Log lines as text (default) or one JSON object per line (time, level, logger, "
    "message, federation/round/collaborator); or the FX_LOG_FORMAT environment variable. "
    "Processes it starts inherit it.",
)
@click.version_option(package_name="openfl_like", prog_name="fx")
def cli(log_level: str | None, log_format: str | None) -> None:
    """openfl_like: federated learning over mutually authenticated gRPC.

    \b
    Typical single-host run:
      fx pki init
      fx plan run plans/keras_digits
    """
    if log_format:
        os.environ[FORMAT_ENV] = log_format.lower()  # children (plan run, director, envoy)
    configure_logging(log_level, log_format=log_format)


def main(argv: list[str] | None = None) -> Any:
    die_with_parent_from_env()  # a director's aggregator, an envoy's collaborator (core.parent)
    try:
        result = cli.main(args=argv, prog_name="fx", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("fx: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except OpenflLikeError as exc:
        click.echo(f"fx: error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        click.echo(f"fx: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("fx: interrupted", err=True)
        sys.exit(130)
    if isinstance(result, int) and result:
        sys.exit(result)
    return result


if __name__ == "__main__":
    main()
