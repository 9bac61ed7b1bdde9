"""Typed, frozen settings of a federation plan, with the defaults documented where they live.

``openfl_like.plan.load`` builds these from ``plan.yaml``, ``cols.yaml`` and ``data.yaml``;
everything else in the project reads a ``Plan``, never a raw dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from openfl_like.core.errors import PlanError
from openfl_like.core.messages import TaskKind

Scalar = str | int | float | bool


def _frozen_map(values: Mapping[str, object] | None = None) -> Mapping[str, object]:
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True)
class FederationSettings:
    name: str = "federation"
    # Derived from the plan's settings (uuid5 of their digest) unless plan.yaml gives one.
    federation_uuid: str = ""


@dataclass(frozen=True)
class BestModelSettings:
    # A metric of aggregated_model_validation (the only task that measures the global model).
    metric: str = "accuracy"
    direction: str = "max"  # max | min

    def better(self, candidate: float, incumbent: float | None) -> bool:
        if incumbent is None:
            return True
        return candidate > incumbent if self.direction == "max" else candidate < incumbent


@dataclass(frozen=True)
class AggregatorSettings:
    name: str = "aggregator"  # CN of the aggregator's certificate; also the header receiver
    host: str = "127.0.0.1"
    port: int = 50051
    rounds_to_train: int = 10
    # Folder for state and outputs; relative paths are resolved against the plan folder.
    workspace: str = "workspace"
    best_model: BestModelSettings = field(default_factory=BestModelSettings)
    write_tensorboard: bool = True
    write_plot: bool = True
    # The aggregator's held-out test data: a data description file (like a site's), relative to
    # the plan folder; "" = none. Aggregator-local (not in the digest): sites need not have it.
    test_data: str = ""
    # The initial global model as NumPy weights (.npz: the runner's tensor names, shapes and
    # dtypes; no pickle), relative to the plan folder; "" = the runner's own initialisation.
    # Aggregator-local: collaborators receive the model from the aggregator.
    initial_weights: str = ""


@dataclass(frozen=True)
class CollaboratorSettings:
    epochs: int = 1
    batch_size: int = 32
    heartbeat_seconds: float = 10.0  # 0 turns the heartbeat thread off


@dataclass(frozen=True)
class DataSettings:
    loader: str = "digits"
    seed: int = 0
    test_fraction: float = 0.2
    split: str = "iid"  # iid | dirichlet
    alpha: float = 0.5  # Dirichlet concentration (split: dirichlet only)
    valid_fraction: float = 0.1  # of each shard, for local validation
    num_shards: int = 0  # 0 = one shard per collaborator of cols.yaml (resolved by the loader)


@dataclass(frozen=True)
class TaskRunnerSettings:
    name: str = "numpy"  # a name of plan.registry.KNOWN_RUNNERS, or 'module:attr' when allowed
    params: Mapping[str, Scalar] = field(default_factory=_frozen_map)  # type: ignore[arg-type]
    allow_custom_objects: bool = False


@dataclass(frozen=True)
class AssignerSettings:
    name: str = "all_tasks"  # every collaborator gets every task of the round


@dataclass(frozen=True)
class AggregationSettings:
    name: str = "fedavg"  # fedavg | fedopt | median | trimmed_mean
    # fedopt only: server optimizer on the pseudo-gradient (Reddi et al., 2021).
    optimizer: str = "adam"  # adam | yogi
    lr: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    # trimmed_mean only: fraction cut from each end, per coordinate.
    trim_fraction: float = 0.1


@dataclass(frozen=True)
class StragglerSettings:
    enabled: bool = True
    round_deadline_seconds: float = 300.0
    # 0 = a majority of cols.yaml, resolved by the loader (ceil(n / 2)).
    min_collaborators: int = 0
    on_deadline_without_quorum: str = "wait"  # wait | fail
    # A participant with no call and no parked long-poll for this long is dropped from the
    # rounds (they close without it) until it calls again; 0 turns this off. Keep it well above
    # collaborator.heartbeat_seconds (the heartbeat is its sign of life while it trains).
    liveness_timeout_seconds: float = 60.0


@dataclass(frozen=True)
class ModeSettings:
    name: str = "sync"  # sync | async (FedBuff)
    buffer_size: int = 2  # async: updates per server step
    staleness: str = "polynomial"  # async: constant | polynomial | hinge
    staleness_exponent: float = 0.5  # polynomial: s(t) = (1 + t) ** -a
    hinge_after: int = 4  # hinge: s(t) = 1 for t <= b, else 1 / (a * (t - b) + 1)
    max_staleness: int = 8  # async: older updates are refused


@dataclass(frozen=True)
class DataContract:
    """What every site's data must look like; shared by all sites (part of the plan digest).

    Labels of kind ``classes`` are names looked up in ``classes``, so every site maps the same
    label to the same index whatever order its files list them in.
    """

    features: tuple[int, ...]  # shape of one sample, e.g. (30,) or (8, 8, 1)
    dtype: str = "float32"
    label: str = "classes"  # classes | regression
    classes: tuple[str, ...] = ()  # required for label: classes
    image_size: tuple[int, int] | None = None  # (height, width), image folders only
    color_mode: str | None = None  # grayscale | rgb, image folders only
    columns: tuple[str, ...] = ()  # CSV feature columns, in order; () = all but the label
    label_column: str = "label"

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class Plan:
    plan_dir: Path
    federation: FederationSettings
    aggregator: AggregatorSettings
    collaborator: CollaboratorSettings
    data: DataSettings
    task_runner: TaskRunnerSettings
    tasks: tuple[TaskKind, ...]
    assigner: AssignerSettings
    aggregation: AggregationSettings
    stragglers: StragglerSettings
    mode: ModeSettings
    network: Mapping[str, Scalar]
    collaborators: tuple[str, ...]
    shards: Mapping[str, int | str]
    # None when plan.yaml has no data_contract section.
    data_contract: DataContract | None = None

    @property
    def workspace_dir(self) -> Path:
        path = Path(self.aggregator.workspace).expanduser()
        return path if path.is_absolute() else (self.plan_dir / path)

    @property
    def state_dir(self) -> Path:
        return self.workspace_dir / "state"

    @property
    def output_dir(self) -> Path:
        return self.workspace_dir / "outputs"

    @property
    def federation_uuid(self) -> str:
        return self.federation.federation_uuid

    def shard_for(self, collaborator: str) -> int | str:
        """The shard index (or path, relative to the plan folder) of ``collaborator``."""
        try:
            return self.shards[collaborator]
        except KeyError:
            raise PlanError(f"data.yaml: {collaborator}: no shard for this collaborator") from None
