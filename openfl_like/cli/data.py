"""`fx data`: check a site's own data against the plan's data contract."""

from __future__ import annotations

from pathlib import Path

import click

from openfl_like.cli.options import allow_custom_option, plan_dir_option


@click.group()
def data() -> None:
    """Local data: check a site's data description against the plan."""


@data.command("check")
@plan_dir_option
@click.option("--data", "data_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="This site's data description (YAML: loader and params; stays local).")
@allow_custom_option
def check(plan_dir: Path, data_file: Path, allow_custom: bool) -> None:
    """Load this site's data and check it against the plan's data_contract.

    Prints the sample counts, the feature shape and the training samples per class; a
    mismatch is one line naming the file and what differs, with a non-zero exit.
    """
    from openfl_like.app.data import check_local_data

    report = check_local_data(plan_dir, data_file, allow_custom=allow_custom)
    ds = report.dataset
    click.echo(f"data: {ds.source} (loader {ds.loader})")
    click.echo(f"train samples: {ds.num_train}")
    click.echo(f"valid samples: {ds.num_valid}")
    click.echo(f"features: {tuple(ds.x_train.shape[1:])} {ds.x_train.dtype}")
    counts = report.class_counts()
    if counts:
        click.echo("classes (train): " + ", ".join(f"{name} {n}" for name, n in counts))
    if report.contract_digest is None:
        click.echo("the plan has no data_contract: shapes and labels were not checked")
    else:
        click.echo(f"contract digest: {report.contract_digest}")
        click.echo("ok: the data matches the plan's data_contract")
