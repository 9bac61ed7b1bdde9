"""plan.yaml + cols.yaml + data.yaml -> a validated, typed ``Plan``.

Every error is a ``PlanError`` naming the file, the key path and what was expected, e.g.
``plan.yaml: aggregator.rounds_to_train: must be > 0 (got 0)``. Unknown keys are errors too, so a
typo never silently falls back to a default. Loading never imports anything named by the plan.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from openfl_like.core.errors import ConfigError, PlanError
from openfl_like.core.ids import check_name
from openfl_like.core.messages import TaskKind
from openfl_like.plan import registry
from openfl_like.plan.contract import parse_data_contract
from openfl_like.plan.schema import (
    AggregationSettings,
    AggregatorSettings,
    AssignerSettings,
    BestModelSettings,
    CollaboratorSettings,
    DataSettings,
    FederationSettings,
    ModeSettings,
    Plan,
    Scalar,
    StragglerSettings,
    TaskRunnerSettings,
)

PLAN_FILE = "plan.yaml"
COLS_FILE = "cols.yaml"
DATA_FILE = "data.yaml"

DEFAULT_TASKS: tuple[TaskKind, ...] = (
    TaskKind.VALIDATE_GLOBAL,
    TaskKind.TRAIN,
    TaskKind.VALIDATE_LOCAL,
)

T = TypeVar("T")
_MISSING = object()


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


class _Section:
    """Typed reads of one mapping of a plan file; ``done()`` refuses keys nobody asked for."""

    def __init__(self, file: str, path: str, raw: object) -> None:
        self.file, self.path = file, path
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise self.error("", f"must be a mapping (got {type(raw).__name__})")
        self.raw: dict[str, Any] = raw
        self.seen: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path and key else (self.path or key)

    def error(self, key: str, message: str) -> PlanError:
        where = self.key(key)
        return PlanError(f"{self.file}: {where}: {message}" if where else f"{self.file}: {message}")

    def get(self, key: str, default: object = _MISSING) -> Any:
        self.seen.add(key)
        if key in self.raw and self.raw[key] is not None:
            return self.raw[key]
        if default is _MISSING:
            raise self.error(key, "is required")
        return default

    def section(self, key: str) -> _Section:
        self.seen.add(key)
        return _Section(self.file, self.key(key), self.raw.get(key))

    def string(self, key: str, default: str | object = _MISSING, *,
               choices: tuple[str, ...] | None = None) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string (got {_show(value)})")
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)} (got {_show(value)})")
        return value

    def boolean(self, key: str, default: bool | object = _MISSING) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false (got {_show(value)})")
        return value

    def integer(self, key: str, default: int | object = _MISSING, *, minimum: int | None = None,
                maximum: int | None = None, exclusive_min: bool = False) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer (got {_show(value)})")
        self._bounds(key, value, minimum, maximum, exclusive_min)
        return value

    def number(self, key: str, default: float | object = _MISSING, *,
               minimum: float | None = None, maximum: float | None = None,
               exclusive_min: bool = False, exclusive_max: bool = False) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value
        ):
            raise self.error(key, f"must be a finite number (got {_show(value)})")
        self._bounds(key, value, minimum, maximum, exclusive_min, exclusive_max)
        return float(value)

    def _bounds(self, key: str, value: float, minimum: float | None, maximum: float | None,
                exclusive_min: bool, exclusive_max: bool = False) -> None:
        if minimum is not None:
            if exclusive_min and not value > minimum:
                raise self.error(key, f"must be > {minimum} (got {value})")
            if not exclusive_min and value < minimum:
                raise self.error(key, f"must be >= {minimum} (got {value})")
        if maximum is not None:
            if exclusive_max and not value < maximum:
                raise self.error(key, f"must be < {maximum} (got {value})")
            if not exclusive_max and value > maximum:
                raise self.error(key, f"must be <= {maximum} (got {value})")

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.seen, key=str)
        if unknown:
            raise self.error(
                str(unknown[0]), "unknown key (check the spelling; see the plan documentation)"
            )


def _read_yaml(plan_dir: Path, name: str) -> object:
    path = plan_dir / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(f"{name}: not found in {plan_dir}") from None
    except OSError as exc:
        raise PlanError(f"{name}: cannot be read ({exc.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise PlanError(f"{name}: invalid YAML{where}: {problem}") from None


def load_plan(plan_dir: str | Path) -> Plan:
    """Load and validate the three files of a plan folder. Never imports anything the plan names."""
    folder = Path(plan_dir).expanduser().resolve()
    if not folder.is_dir():
        raise PlanError(f"{plan_dir}: not a plan folder (expected {PLAN_FILE}, {COLS_FILE}, "
                        f"{DATA_FILE})")
    return parse_plan(
        _read_yaml(folder, PLAN_FILE),
        _read_yaml(folder, COLS_FILE),
        _read_yaml(folder, DATA_FILE),
        plan_dir=folder,
    )


def parse_plan(plan_doc: object, cols_doc: object, data_doc: object, *, plan_dir: Path) -> Plan:
    """Validate already-parsed documents (e.g. a plan received from a director) into a Plan."""
    collaborators = _parse_cols(cols_doc)
    root = _Section(PLAN_FILE, "", plan_doc)
    federation = _parse_federation(root.section("federation"))
    aggregator = _parse_aggregator(root.section("aggregator"))
    if aggregator.name in collaborators:
        raise PlanError(f"{PLAN_FILE}: aggregator.name: must differ from every collaborator name "
                        f"(got {aggregator.name!r})")
    collaborator = _parse_collaborator(root.section("collaborator"))
    data = _parse_data(root.section("data"))
    task_runner = _parse_task_runner(root.section("task_runner"))
    tasks = _parse_tasks(root)
    if aggregator.rounds_to_train == 0 and TaskKind.VALIDATE_GLOBAL not in tasks:
        raise PlanError(f"{PLAN_FILE}: aggregator.rounds_to_train: must be > 0 (got 0; 0 means "
                        f"validation only and needs the task {TaskKind.VALIDATE_GLOBAL.value})")
    assigner = _parse_assigner(root.section("assigner"))
    aggregation = _parse_aggregation(root.section("aggregation"))
    stragglers = _parse_stragglers(root.section("stragglers"), len(collaborators))
    mode = _parse_mode(root.section("mode"))
    if mode.name == "async" and aggregation.name != "fedavg":
        # FedBuff applies a staleness-weighted mean of deltas to the current model; a robust
        # statistic or a server optimizer over deltas of different base models is not defined
        # here, so refuse the plan rather than fail at the first round close.
        raise PlanError(f"{PLAN_FILE}: aggregation.name: {aggregation.name!r} cannot be used "
                        "with mode 'async' (it averages staleness-weighted deltas); use fedavg "
                        "or mode 'sync'")
    network = _parse_network(root.section("network"))
    data_contract = None
    if root.raw.get("data_contract") is not None:
        data_contract = parse_data_contract(root.section("data_contract"))
    root.seen.add("data_contract")
    root.done()
    shards = _parse_data_yaml(data_doc, collaborators)
    top_index = max((v for v in shards.values() if isinstance(v, int)), default=-1)
    if data.num_shards == 0:
        data = replace(data, num_shards=max(len(collaborators), top_index + 1))
    elif top_index >= data.num_shards:
        raise PlanError(f"{DATA_FILE}: shard index {top_index} is out of range "
                        f"(plan.yaml data.num_shards is {data.num_shards})")
    plan = Plan(
        plan_dir=plan_dir,
        federation=federation,
        aggregator=aggregator,
        collaborator=collaborator,
        data=data,
        task_runner=task_runner,
        tasks=tasks,
        assigner=assigner,
        aggregation=aggregation,
        stragglers=stragglers,
        mode=mode,
        network=network,
        collaborators=collaborators,
        shards=shards,
        data_contract=data_contract,
    )
    if not federation.federation_uuid:
        from openfl_like.plan.digest import settings_digest

        derived = str(uuid.uuid5(uuid.NAMESPACE_URL, "openfl-like:" + settings_digest(plan)))
        plan = replace(plan, federation=replace(federation, federation_uuid=derived))
    return plan


def _parse_cols(doc: object) -> tuple[str, ...]:
    section = _Section(COLS_FILE, "", doc)
    raw = section.get("collaborators")
    section.done()
    if not isinstance(raw, list) or not raw:
        raise PlanError(f"{COLS_FILE}: collaborators: must be a non-empty list of names")
    names: list[str] = []
    for index, name in enumerate(raw):
        if not isinstance(name, str):
            raise PlanError(f"{COLS_FILE}: collaborators[{index}]: must be a name (got {name!r})")
        try:
            check_name(name, "collaborator name")
        except ConfigError as exc:
            raise PlanError(f"{COLS_FILE}: collaborators[{index}]: {exc.message}") from None
        if name in names:
            raise PlanError(f"{COLS_FILE}: collaborators[{index}]: duplicate name {name!r}")
        names.append(name)
    return tuple(names)


def _parse_data_yaml(doc: object, collaborators: tuple[str, ...]) -> Mapping[str, int | str]:
    section = _Section(DATA_FILE, "", doc)
    shards: dict[str, int | str] = {}
    for name, value in section.raw.items():
        if name not in collaborators:
            raise PlanError(f"{DATA_FILE}: {name}: not a collaborator of {COLS_FILE}")
        if isinstance(value, bool) or not isinstance(value, (int, str)) or value in ("", None):
            raise PlanError(f"{DATA_FILE}: {name}: must be a shard index or a path "
                            f"(got {value!r})")
        if isinstance(value, int) and value < 0:
            raise PlanError(f"{DATA_FILE}: {name}: must be >= 0 (got {value})")
        shards[str(name)] = value
    return MappingProxyType(shards)


def _parse_federation(s: _Section) -> FederationSettings:
    d = FederationSettings()
    result = FederationSettings(
        name=s.string("name", d.name),
        federation_uuid=s.get("federation_uuid", ""),
    )
    if not isinstance(result.federation_uuid, str):
        raise s.error("federation_uuid", f"must be a string (got {result.federation_uuid!r})")
    if result.federation_uuid:
        try:
            uuid.UUID(result.federation_uuid)
        except ValueError:
            raise s.error("federation_uuid", "must be a UUID (or leave it out to derive one)") \
                from None
    s.done()
    return result


def _parse_aggregator(s: _Section) -> AggregatorSettings:
    d = AggregatorSettings()
    name = s.string("name", d.name)
    try:
        check_name(name, "aggregator name")
    except ConfigError as exc:
        raise s.error("name", exc.message) from None
    best = s.section("best_model")
    bd = BestModelSettings()
    best_model = BestModelSettings(
        metric=best.string("metric", bd.metric),
        direction=best.string("direction", bd.direction, choices=("max", "min")),
    )
    best.done()
    result = AggregatorSettings(
        name=name,
        host=s.string("host", d.host),
        port=s.integer("port", d.port, minimum=0, maximum=65535),
        # 0: validation only (round 0 is the final round; needs aggregated_model_validation)
        rounds_to_train=s.integer("rounds_to_train", d.rounds_to_train, minimum=0),
        workspace=s.string("workspace", d.workspace),
        best_model=best_model,
        write_tensorboard=s.boolean("write_tensorboard", d.write_tensorboard),
        write_plot=s.boolean("write_plot", d.write_plot),
        test_data=d.test_data if s.get("test_data", None) is None else s.string("test_data"),
        initial_weights=(d.initial_weights if s.get("initial_weights", None) is None
                         else s.string("initial_weights")),
    )
    s.done()
    return result


def _parse_collaborator(s: _Section) -> CollaboratorSettings:
    d = CollaboratorSettings()
    result = CollaboratorSettings(
        epochs=s.integer("epochs", d.epochs, minimum=0, exclusive_min=True),
        batch_size=s.integer("batch_size", d.batch_size, minimum=0, exclusive_min=True),
        heartbeat_seconds=s.number("heartbeat_seconds", d.heartbeat_seconds, minimum=0),
    )
    s.done()
    return result


def _parse_data(s: _Section) -> DataSettings:
    d = DataSettings()
    result = DataSettings(
        loader=s.string("loader", d.loader, choices=registry.KNOWN_DATA_LOADERS),
        seed=s.integer("seed", d.seed, minimum=0),
        test_fraction=s.number("test_fraction", d.test_fraction, minimum=0, maximum=1,
                               exclusive_min=True, exclusive_max=True),
        split=s.string("split", d.split, choices=registry.KNOWN_SPLITS),
        alpha=s.number("alpha", d.alpha, minimum=0, exclusive_min=True),
        valid_fraction=s.number("valid_fraction", d.valid_fraction, minimum=0, maximum=1,
                                exclusive_max=True),
        num_shards=s.integer("num_shards", d.num_shards, minimum=0),
    )
    s.done()
    return result


def _parse_task_runner(s: _Section) -> TaskRunnerSettings:
    d = TaskRunnerSettings()
    allow_custom = s.boolean("allow_custom_objects", d.allow_custom_objects)
    name = s.string("name", d.name)
    if registry.is_object_reference(name):
        if not allow_custom:
            raise s.error("name", f"{name!r} is a custom object; set "
                          "task_runner.allow_custom_objects: true to allow it")
    elif name not in registry.KNOWN_RUNNERS:
        raise s.error("name", f"must be one of {', '.join(registry.KNOWN_RUNNERS)} "
                      f"(got {name!r})")
    params = s.section("params")
    values: dict[str, Scalar] = {}
    for key, value in params.raw.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise params.error(str(key), "parameter names must be identifiers")
        if not isinstance(value, (str, int, float, bool)):
            raise params.error(key, f"must be a string, number or boolean (got {value!r})")
        if isinstance(value, float) and not math.isfinite(value):
            raise params.error(key, f"must be finite (got {value})")
        if registry.is_object_reference(value) and not allow_custom:
            raise params.error(key, f"{value!r} is a custom object; set "
                               "task_runner.allow_custom_objects: true to allow it")
        values[key] = value
    s.done()
    return TaskRunnerSettings(name=name, params=MappingProxyType(values),
                              allow_custom_objects=allow_custom)


def _parse_tasks(root: _Section) -> tuple[TaskKind, ...]:
    raw = root.get("tasks", [t.value for t in DEFAULT_TASKS])
    known = [t.value for t in TaskKind]
    if not isinstance(raw, list) or not raw:
        raise root.error("tasks", f"must be a non-empty list of: {', '.join(known)}")
    tasks: list[TaskKind] = []
    for index, item in enumerate(raw):
        if item not in known:
            raise root.error(f"tasks[{index}]", f"must be one of {', '.join(known)} "
                             f"(got {_show(item)})")
        kind = TaskKind(item)
        if kind in tasks:
            raise root.error(f"tasks[{index}]", f"duplicate task {item!r}")
        tasks.append(kind)
    if TaskKind.TRAIN not in tasks:
        raise root.error("tasks", "must include train")
    # Run order is fixed: validate the global model, train, validate the trained model.
    return tuple(t for t in DEFAULT_TASKS if t in tasks)


def _parse_assigner(s: _Section) -> AssignerSettings:
    result = AssignerSettings(
        name=s.string("name", AssignerSettings().name, choices=registry.KNOWN_ASSIGNERS)
    )
    s.done()
    return result


_ALGORITHM_KEYS = {
    "fedavg": set(),
    "median": set(),
    "fedopt": {"optimizer", "lr", "beta1", "beta2", "tau"},
    "trimmed_mean": {"trim_fraction"},
}


def _parse_aggregation(s: _Section) -> AggregationSettings:
    d = AggregationSettings()
    name = s.string("name", d.name, choices=registry.KNOWN_AGGREGATIONS)
    for key in s.raw:
        if key != "name" and key in set().union(*_ALGORITHM_KEYS.values()) \
                and key not in _ALGORITHM_KEYS[name]:
            raise s.error(key, f"does not apply to aggregation {name!r}")
    result = AggregationSettings(
        name=name,
        optimizer=s.string("optimizer", d.optimizer, choices=registry.KNOWN_SERVER_OPTIMIZERS),
        lr=s.number("lr", d.lr, minimum=0, exclusive_min=True),
        beta1=s.number("beta1", d.beta1, minimum=0, maximum=1, exclusive_max=True),
        beta2=s.number("beta2", d.beta2, minimum=0, maximum=1, exclusive_max=True),
        tau=s.number("tau", d.tau, minimum=0, exclusive_min=True),
        trim_fraction=s.number("trim_fraction", d.trim_fraction, minimum=0, maximum=0.5,
                               exclusive_max=True),
    )
    s.done()
    return result


def _parse_stragglers(s: _Section, num_collaborators: int) -> StragglerSettings:
    d = StragglerSettings()
    result = StragglerSettings(
        enabled=s.boolean("enabled", d.enabled),
        round_deadline_seconds=s.number("round_deadline_seconds", d.round_deadline_seconds,
                                        minimum=0, exclusive_min=True),
        min_collaborators=s.integer("min_collaborators", d.min_collaborators, minimum=0),
        on_deadline_without_quorum=s.string("on_deadline_without_quorum",
                                            d.on_deadline_without_quorum,
                                            choices=("wait", "fail")),
        liveness_timeout_seconds=s.number("liveness_timeout_seconds",
                                          d.liveness_timeout_seconds, minimum=0),
    )
    if result.min_collaborators > num_collaborators:
        raise s.error("min_collaborators", f"must be <= the {num_collaborators} collaborators "
                      f"of {COLS_FILE} (got {result.min_collaborators})")
    if result.min_collaborators == 0:
        result = replace(result, min_collaborators=max(1, math.ceil(num_collaborators / 2)))
    s.done()
    return result


def _parse_mode(s: _Section) -> ModeSettings:
    d = ModeSettings()
    name = s.string("name", d.name, choices=registry.KNOWN_MODES)
    if name == "sync":
        extra = sorted(k for k in s.raw if k != "name")
        if extra:
            raise s.error(extra[0], "applies to mode 'async' only")
    result = ModeSettings(
        name=name,
        buffer_size=s.integer("buffer_size", d.buffer_size, minimum=0, exclusive_min=True),
        staleness=s.string("staleness", d.staleness, choices=registry.KNOWN_STALENESS),
        staleness_exponent=s.number("staleness_exponent", d.staleness_exponent, minimum=0),
        hinge_after=s.integer("hinge_after", d.hinge_after, minimum=0),
        max_staleness=s.integer("max_staleness", d.max_staleness, minimum=0),
    )
    s.done()
    return result


def _parse_network(s: _Section) -> Mapping[str, Scalar]:
    values: dict[str, Scalar] = dict(registry.NETWORK_DEFAULTS)
    for key in list(s.raw):
        expected = registry.NETWORK_KEYS.get(key)
        if expected is None:
            raise s.error(str(key), "unknown key (known: "
                          f"{', '.join(sorted(registry.NETWORK_KEYS))})")
        if expected is bool:
            values[key] = s.boolean(key)
        elif expected is str:
            values[key] = s.string(key, choices=registry.NETWORK_CHOICES.get(key))
        elif expected is int:
            values[key] = s.integer(key, minimum=0, exclusive_min=True)
        else:
            values[key] = s.number(key, minimum=0, exclusive_min=True)
    s.done()
    return MappingProxyType(values)
