"""Every fx command explains every option, and --help stays cheap (no grpc, no TensorFlow)."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from openfl_like.cli.main import cli


def _walk(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"fx {' '.join((*prefix, name))} cannot be loaded"
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _walk(command, ctx, (*prefix, name))


def _all_commands():
    ctx = click.Context(cli)
    return list(_walk(cli, ctx))


def test_every_group_of_the_guide_exists() -> None:
    names = {" ".join(path) for path, _ in _all_commands()}
    for expected in ("pki init", "pki certify", "pki csr", "pki sign", "pki verify", "pki revoke",
                     "pki list", "plan validate", "plan run", "aggregator start",
                     "aggregator status", "collaborator start", "vertical start", "vertical run"):
        assert expected in names


@pytest.mark.parametrize("path, command", _all_commands(), ids=lambda v: " ".join(v)
                         if isinstance(v, tuple) else "")
def test_every_command_and_option_has_help(path: tuple[str, ...], command: click.Command) -> None:
    assert (command.help or command.short_help), f"fx {' '.join(path)} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, f"fx {' '.join(path)} {param.opts[0]} has no help text"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output


def test_help_imports_neither_grpc_nor_tensorflow() -> None:
    code = ("import sys\nfrom openfl_like.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "for group in ('plan', 'aggregator', 'collaborator', 'vertical'):\n"
            "    try:\n        main([group, '--help'])\n    except SystemExit:\n        pass\n"
            "bad = [m for m in ('grpc', 'tensorflow', 'keras') if m in sys.modules]\n"
            "print('LOADED', bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "LOADED []" in out
