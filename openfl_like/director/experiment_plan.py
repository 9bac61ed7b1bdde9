"""An experiment's plan folder, ``<ws>/experiments/<name>/plan/``, from its submitted plan.

The director decides what the experimenter cannot know: the aggregator's name (the director's),
where it listens (public host, a port of the range), its workspace, the collaborators (the
chosen envoys) and their data (each envoy brings its own description with ``--data``, so
data.yaml holds a placeholder path). The federation_uuid is then derived by ``load_plan`` from
these settings, so each experiment has its own.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openfl_like.core.errors import OpenflLikeError
from openfl_like.core.experiments import ExperimentKind
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import TaskKind
from openfl_like.data.contract_check import check_dataset
from openfl_like.data.local import load_local_dataset
from openfl_like.plan.load import load_plan
from openfl_like.plan.local_data import load_local_data_spec
from openfl_like.plan.registry import NETWORK_KEYS
from openfl_like.plan.schema import Plan
from openfl_like.plan.write import write_plan_folder

log = get_logger(__name__)

# The transport setting that lets envoy certificates act as collaborators. Written only when
# this build's plan schema knows it (another change adds it).
CLIENT_ROLE_KEY = "client_role"
CLIENT_ROLE = "envoy"
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 2.0
# data.yaml value of each envoy: the envoy passes its own data description with --data.
LOCAL_DATA = "local"


@dataclass(frozen=True)
class ExperimentPaths:
    root: Path

    @classmethod
    def of(cls, workspace: Path, name: str) -> ExperimentPaths:
        return cls(workspace / "experiments" / name)

    @property
    def plan_dir(self) -> Path:
        return self.root / "plan"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def package_dir(self) -> Path:
        return self.root / "package"

    @property
    def output_dir(self) -> Path:
        return self.workspace / "outputs"


def experiment_plan_doc(doc: Mapping[str, Any], *, kind: ExperimentKind, aggregator_name: str,
                        host: str, port: int, workspace: Path, model_file: str
                        ) -> dict[str, Any]:
    """The submitted plan with the director's settings put in."""
    out: dict[str, Any] = copy.deepcopy(dict(doc))
    aggregator = dict(out.get("aggregator") or {})
    aggregator.update(name=aggregator_name, host=host, port=port, workspace=str(workspace))
    aggregator.pop("test_data", None)
    if kind is ExperimentKind.VALIDATE:
        aggregator["rounds_to_train"] = 0  # round 0 is the final validation round
        tasks = out.get("tasks")
        if isinstance(tasks, list) and TaskKind.VALIDATE_GLOBAL.value not in tasks:
            out["tasks"] = [TaskKind.VALIDATE_GLOBAL.value, *tasks]
    out["aggregator"] = aggregator
    network = dict(out.get("network") or {})
    # The envoys start their collaborators while the aggregator starts: a short first backoff
    # lets them join as soon as it listens (the plan may say otherwise).
    network.setdefault("retry_initial_seconds", FIRST_RETRY_SECONDS)
    # ... and a short longest backoff: the aggregator's farewell waits out a backoff for a site
    # that dropped out (it may come back), so an envoy that died does not hold the end long.
    network.setdefault("retry_max_seconds", MAX_RETRY_SECONDS)
    if CLIENT_ROLE_KEY in NETWORK_KEYS:
        network[CLIENT_ROLE_KEY] = CLIENT_ROLE
    out["network"] = network
    if model_file.endswith(".npz"):
        aggregator["initial_weights"] = model_file  # the aggregator starts from these weights
    if model_file.endswith(".keras"):
        runner = dict(out.get("task_runner") or {})
        params = dict(runner.get("params") or {})
        params["model"] = model_file
        runner["params"] = params
        out["task_runner"] = runner
    return out


def write_experiment_plan(paths: ExperimentPaths, doc: Mapping[str, Any], *,
                          kind: ExperimentKind, aggregator_name: str, host: str, port: int,
                          envoys: Sequence[str], model_source: Path | None,
                          test_data: Path | None = None) -> Plan:
    """Write plan.yaml, cols.yaml, data.yaml (and the model next to them); load it back.

    ``test_data``: the director's held-out set, put in as aggregator.test_data when it fits the
    plan's data_contract (else left out with a log line: the final metrics are then the
    envoys' validation)."""
    model_file = model_source.name if model_source is not None else ""
    plan_doc = experiment_plan_doc(doc, kind=kind, aggregator_name=aggregator_name, host=host,
                                   port=port, workspace=paths.workspace, model_file=model_file)
    paths.plan_dir.mkdir(parents=True, exist_ok=True)
    if model_source is not None:
        shutil.copyfile(model_source, paths.plan_dir / model_file)
    write_plan_folder(paths.plan_dir, plan_doc, list(envoys),
                      {name: LOCAL_DATA for name in envoys})
    plan = load_plan(paths.plan_dir)
    if test_data is not None and fits_test_data(plan, test_data):
        plan_doc["aggregator"]["test_data"] = str(test_data)
        write_plan_folder(paths.plan_dir, plan_doc, list(envoys),
                          {name: LOCAL_DATA for name in envoys})
        plan = load_plan(paths.plan_dir)
    return plan


def fits_test_data(plan: Plan, test_data: Path) -> bool:
    """Whether the director's test set loads and fits the experiment's data_contract."""
    if plan.data_contract is None:
        return False
    try:
        spec = load_local_data_spec(test_data)
        dataset = load_local_dataset(spec.loader, spec.params, contract=plan.data_contract)
        check_dataset(dataset, plan.data_contract)
    except OpenflLikeError as exc:
        log.warning("the director's test data %s does not fit experiment %s (%s): its final "
                    "metrics will be the envoys' validation", test_data, plan.federation.name,
                    exc.message)
        return False
    return True
