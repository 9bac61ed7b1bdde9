"""Small pieces the composition roots share: runner parameters and workspace paths of a plan."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openfl_like.core.errors import ConfigError
from openfl_like.plan.schema import Plan


def runner_params(plan: Plan, *, allow_custom: bool = False) -> dict[str, Any]:
    """The runner's keyword settings from the plan; custom objects only when both sides allow."""
    params: dict[str, Any] = dict(plan.task_runner.params)
    contract = plan.data_contract
    if plan.task_runner.name == "numpy" and contract is not None:
        # The model's shape follows the contract on every site (params still override), so the
        # aggregator's initial model fits every site's data without it seeing any.
        params.setdefault("input_dim", int(math.prod(contract.features)))
        if contract.label == "classes" and contract.classes:
            params.setdefault("num_classes", len(contract.classes))
    if plan.task_runner.name == "keras":
        params["allow_custom"] = bool(allow_custom and plan.task_runner.allow_custom_objects)
        params["plan_dir"] = str(plan.plan_dir)  # a `model` file is relative to the plan
    return params


@dataclass(frozen=True)
class Workspace:
    """Where one federation keeps its state, outputs, status and logs."""

    root: Path

    @classmethod
    def for_plan(cls, plan: Plan, override: str | Path | None = None) -> Workspace:
        return cls(Path(override).resolve() if override else plan.workspace_dir.resolve())

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def output_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def status_path(self) -> Path:
        return self.root / "status.json"

    @property
    def final_metrics_path(self) -> Path:
        return self.output_dir / "final_metrics.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def locks_dir(self) -> Path:
        return self.root / "locks"


def parse_address(address: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); ConfigError when malformed."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"invalid aggregator address {address!r}: expected HOST:PORT")
    return host, int(port_text)
