"""The plan reference (``docs/plan_reference.md``), generated from the schema so it cannot drift.

Keys, types and defaults come from the frozen dataclasses of ``plan.schema`` (and the name lists
of ``plan.registry``); only the one-line descriptions are written here, keyed by the dotted path
of each key. A key without a description, or a description without a key, is an error, and
``tests/unit/plan/test_reference.py`` regenerates the file and compares it with the committed one.

    python -m openfl_like.plan.reference > docs/plan_reference.md     (or: make docs)
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from openfl_like.core.messages import TaskKind
from openfl_like.plan import registry
from openfl_like.plan.contract import COLOR_MODES, DTYPES, LABEL_KINDS
from openfl_like.plan.load import DEFAULT_TASKS, REFERENCE_DOC
from openfl_like.plan.schema import (
    AggregationSettings,
    AggregatorSettings,
    AssignerSettings,
    CollaboratorSettings,
    DataContract,
    DataSettings,
    FederationSettings,
    ModeSettings,
    StragglerSettings,
    TaskRunnerSettings,
)

__all__ = ["REFERENCE_DOC", "documented_keys", "render"]

# plan.yaml's sections in the order the reference lists them: (key, dataclass, what it is).
SECTIONS: tuple[tuple[str, type[Any], str], ...] = (
    ("federation", FederationSettings, "Names the federation."),
    ("aggregator", AggregatorSettings, "The aggregator: address, rounds, workspace, outputs."),
    ("collaborator", CollaboratorSettings, "How every collaborator trains and reports."),
    ("data", DataSettings, "The built-in digits data and how it is split into shards."),
    ("task_runner", TaskRunnerSettings, "The model and how it trains (see the runner tables)."),
    ("assigner", AssignerSettings, "Which collaborator gets which task."),
    ("aggregation", AggregationSettings, "How the updates of a round become the next model."),
    ("stragglers", StragglerSettings, "Round deadlines, quorum and dropping silent sites."),
    ("mode", ModeSettings, "Synchronous rounds or asynchronous buffered aggregation (FedBuff)."),
    ("data_contract", DataContract, "What every site's data must look like (optional; part of "
     "the plan digest). Without it, sites use the built-in digits."),
)

# Allowed values, where the loader checks against a list.
CHOICES: dict[str, tuple[str, ...]] = {
    "aggregator.best_model.direction": ("max", "min"),
    "data.loader": registry.KNOWN_DATA_LOADERS,
    "data.split": registry.KNOWN_SPLITS,
    "task_runner.name": registry.KNOWN_RUNNERS,
    "assigner.name": registry.KNOWN_ASSIGNERS,
    "aggregation.name": registry.KNOWN_AGGREGATIONS,
    "aggregation.optimizer": registry.KNOWN_SERVER_OPTIMIZERS,
    "stragglers.on_deadline_without_quorum": ("wait", "fail"),
    "mode.name": registry.KNOWN_MODES,
    "mode.staleness": registry.KNOWN_STALENESS,
    "data_contract.dtype": DTYPES,
    "data_contract.label": LABEL_KINDS,
    "data_contract.color_mode": tuple(COLOR_MODES),
    "network.client_role": registry.NETWORK_CHOICES["client_role"],
}

DESCRIPTIONS: dict[str, str] = {
    "federation.name": "A name for logs, status and outputs.",
    "federation.federation_uuid": "A UUID; empty: derived from the plan's settings (uuid5 of "
    "their digest), so every participant computes the same one.",
    "aggregator.name": "The aggregator's certificate CN; collaborators address it by this name.",
    "aggregator.host": "Address the aggregator listens on and collaborators connect to.",
    "aggregator.port": "TCP port (0: any free port, for local runs).",
    "aggregator.rounds_to_train": "Training rounds; 0: validation only (needs the task "
    "aggregated_model_validation).",
    "aggregator.workspace": "Folder for state, outputs, status and logs; relative to the plan "
    "folder.",
    "aggregator.best_model": "Which model is kept as best_model.",
    "aggregator.best_model.metric": "A metric of aggregated_model_validation (the task that "
    "measures the global model).",
    "aggregator.best_model.direction": "Whether a larger or a smaller value is better.",
    "aggregator.write_tensorboard": "Write TensorBoard events to outputs/tensorboard.",
    "aggregator.write_plot": "Write outputs/metrics.png (metrics per round, final test).",
    "aggregator.test_data": "The aggregator's held-out test data (a data description file, "
    "relative to the plan folder); empty: the digits test split for a digits plan, else none.",
    "aggregator.initial_weights": "The initial global model as a .npz of the runner's tensors "
    "(no pickle); empty: the runner's own initialisation.",
    "collaborator.epochs": "Local epochs per training task.",
    "collaborator.batch_size": "Local batch size (training and validation).",
    "collaborator.heartbeat_seconds": "Sign of life while training; 0 turns the heartbeat off.",
    "data.loader": "The built-in data set the shards come from.",
    "data.seed": "Seed of the split and of the runner's initial weights.",
    "data.test_fraction": "Share of the data held out as the aggregator's test set.",
    "data.split": "iid: equal random shards; dirichlet: label-skewed shards.",
    "data.alpha": "Dirichlet concentration (split: dirichlet); smaller is more skewed.",
    "data.valid_fraction": "Share of each shard kept for local validation.",
    "data.num_shards": "0: one shard per collaborator of cols.yaml.",
    "task_runner.name": "A built-in runner, or 'module:attr' when custom objects are allowed.",
    "task_runner.params": "The runner's keyword settings (tables below); other keys are refused.",
    "task_runner.allow_custom_objects": "Allow 'module:attr' values; the operator must also "
    "allow them (--allow-custom).",
    "assigner.name": "all_tasks: every collaborator gets every task of the round.",
    "aggregation.name": "fedavg: sample-weighted mean; fedopt: server optimizer on the mean "
    "update; median, trimmed_mean: robust per-coordinate statistics.",
    "aggregation.optimizer": "fedopt only: the server optimizer.",
    "aggregation.lr": "fedopt only: server learning rate.",
    "aggregation.beta1": "fedopt only: first-moment decay.",
    "aggregation.beta2": "fedopt only: second-moment decay.",
    "aggregation.tau": "fedopt only: adaptivity (epsilon) of the server optimizer.",
    "aggregation.trim_fraction": "trimmed_mean only: share cut from each end, per coordinate.",
    "stragglers.enabled": "Close a round at its deadline when the quorum has reported.",
    "stragglers.round_deadline_seconds": "Age of a round after which it closes with the quorum.",
    "stragglers.min_collaborators": "The quorum; 0: a majority of cols.yaml (ceil(n / 2)).",
    "stragglers.on_deadline_without_quorum": "At the deadline without a quorum: keep waiting, "
    "or fail the federation.",
    "stragglers.liveness_timeout_seconds": "A site silent this long is dropped from the rounds "
    "until it calls again; 0 turns this off. Keep it above heartbeat_seconds.",
    "mode.name": "sync: rounds; async: FedBuff (a server step every buffer_size updates).",
    "mode.buffer_size": "async: updates per server step.",
    "mode.staleness": "async: how older updates are down-weighted.",
    "mode.staleness_exponent": "polynomial: s(t) = (1 + t) ** -a.",
    "mode.hinge_after": "hinge: s(t) = 1 for t <= b, else 1 / (a * (t - b) + 1).",
    "mode.max_staleness": "async: updates more model versions behind are refused.",
    "data_contract.features": "Shape of one sample, e.g. [30] or [8, 8, 1] (required).",
    "data_contract.dtype": "Feature dtype every site delivers.",
    "data_contract.label": "classes: class names; regression: numeric targets.",
    "data_contract.classes": "The class names (label: classes; at least 2); every site maps a "
    "name to the same index.",
    "data_contract.image_size": "[height, width] (image folders only).",
    "data_contract.color_mode": "Image folders only; default grayscale with image_size.",
    "data_contract.columns": "CSV feature columns, in order; empty: all but the label column.",
    "data_contract.label_column": "The CSV column holding the label.",
    "tasks": "The tasks of a round; they always run in the order listed here; train is required.",
    # task_runner.params.<runner>.<key>
    "params.numpy.model": "softmax (a linear model) or mlp (one hidden layer).",
    "params.numpy.hidden_units": "mlp: width of the hidden layer.",
    "params.numpy.optimizer": "Local optimizer: sgd (with momentum) or adam.",
    "params.numpy.learning_rate": "Local step size.",
    "params.numpy.momentum": "sgd: momentum.",
    "params.numpy.input_dim": "Features per sample (follows data_contract when it is set).",
    "params.numpy.num_classes": "Classes (follows data_contract when it is set).",
    "params.noop.size_mib": "Size of the synthetic float32 model (benchmarks).",
    "params.noop.num_tensors": "The model is split into this many tensors.",
    "params.noop.delta": "train adds this to every weight, so aggregation has work to do.",
    "params.noop.data_size": "Sample count reported per site (default: the shard's).",
    "params.keras.builder": "A built-in model (digits_cnn, digits_mlp; default digits_cnn) or "
    "'module:attr' when custom objects are allowed; not with model.",
    "params.keras.model": "A .keras file (relative to the plan folder), the initial model of "
    "every site; checked for Lambda layers and custom objects, loaded in safe mode.",
    "params.keras.task": "classification or regression (default: from the loss).",
    "params.keras.optimizer": "Local optimizer: adam, sgd or rmsprop (reset every round).",
    "params.keras.learning_rate": "Learning rate of the local optimizer.",
    "params.keras.loss": "A Keras loss name (default: sparse_categorical_crossentropy, or "
    "mean_squared_error for regression).",
    "params.keras.metrics": "Per-sample metrics, comma-separated (default: accuracy for "
    "classification, none for regression).",
    # network.<key>: defaults live in transport.settings (with FX_* environment overrides)
    "network.chunk_size_bytes": "Size of the chunks a model is streamed in.",
    "network.max_message_bytes": "Largest gRPC message (default: chunk size + 1 MiB).",
    "network.max_model_bytes": "Largest model accepted per stream (default 0: no limit).",
    "network.keepalive_seconds": "gRPC keepalive ping interval (default 30).",
    "network.keepalive_timeout_seconds": "Keepalive ping timeout (default 10).",
    "network.rpc_timeout_seconds": "Timeout of unary calls (default 30).",
    "network.long_poll_seconds": "How long a task poll waits for work (default 30).",
    "network.retry_initial_seconds": "First reconnect backoff.",
    "network.retry_max_seconds": "Largest reconnect backoff.",
    "network.retry_total_seconds": "Give up reconnecting after this long.",
    "network.tls": "Mutual TLS (default true); false is for local experiments only.",
    "network.client_role": "The certificate role the aggregator accepts from its clients.",
    "network.metrics_port": "HTTP port of /metrics, /healthz, /readyz (0: off; site-local).",
    "network.metrics_host": "Address of that port (default 127.0.0.1; any other is "
                            "unauthenticated and warned about).",
}

def _fields(cls: type[Any]) -> list[dataclasses.Field[Any]]:
    return list(dataclasses.fields(cls))


def _default(f: dataclasses.Field[Any]) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def show(value: object) -> str:
    """A default as it would be written in YAML ('—' when there is none)."""
    if value is dataclasses.MISSING or value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, (tuple, list)):
        return "`[" + ", ".join(str(v) for v in value) + "]`" if value else "`[]`"
    if isinstance(value, Mapping):
        return "`{}`" if not value else f"`{dict(value)}`"
    return f"`{value}`"


def _describe(path: str, used: set[str]) -> str:
    try:
        text = DESCRIPTIONS[path]
    except KeyError:
        raise KeyError(f"plan.reference: no description for {path!r}; add one to "
                       "DESCRIPTIONS") from None
    used.add(path)
    if path in CHOICES:
        text += " One of: " + ", ".join(f"`{c}`" for c in CHOICES[path]) + "."
    return text


def _type(f: dataclasses.Field[Any]) -> str:
    return str(f.type).replace("Mapping[str, Scalar]", "mapping").replace("|", "or")


def _rows(section: str, cls: type[Any], used: set[str]) -> Iterator[str]:
    for f in _fields(cls):
        path = f"{section}.{f.name}"
        if str(f.type).endswith("Settings"):
            yield f"| `{path}` | section | | {_describe(path, used)} |"
            yield from _rows(path, type(_default(f)), used)
            continue
        yield f"| `{path}` | {_type(f)} | {show(_default(f))} | {_describe(path, used)} |"


def documented_keys() -> dict[str, tuple[str, ...]]:
    """Section path -> the keys the reference documents there ('' is plan.yaml's top level)."""
    keys: dict[str, tuple[str, ...]] = {"": (*(s for s, _, _ in SECTIONS), "tasks", "network")}
    for section, cls, _ in SECTIONS:
        keys[section] = tuple(f.name for f in _fields(cls))
        for f in _fields(cls):
            if str(f.type).endswith("Settings"):
                keys[f"{section}.{f.name}"] = tuple(x.name for x in _fields(type(_default(f))))
    keys["network"] = tuple(registry.NETWORK_KEYS)
    for runner, params in registry.RUNNER_PARAMS.items():
        keys[f"task_runner.params[{runner}]"] = tuple(params)
    return keys


def render() -> str:
    """The whole reference as Markdown."""
    used: set[str] = set()
    out = [
        "# plan.yaml reference",
        "",
        "<!-- Generated by `python -m openfl_like.plan.reference > docs/plan_reference.md` "
        "(`make docs`); do not edit. -->",
        "",
        "A plan folder holds `plan.yaml` (the settings below), `cols.yaml` (`collaborators:` "
        "the list of collaborator names) and `data.yaml` (each collaborator's shard index or "
        "data description file). Every key is optional unless it says otherwise; a key the "
        "loader does not know is an error that names the closest known key. "
        "`fx plan validate` checks a plan without starting anything.",
        "",
        "Defaults are the schema's (`openfl_like/plan/schema.py`); `—` means no default.",
        "",
    ]
    for section, cls, text in SECTIONS:
        out += [f"## `{section}`", "", text, "", "| key | type | default | description |",
                "|---|---|---|---|"]
        out += list(_rows(section, cls, used))
        out.append("")
    tasks = ", ".join(f"`{t.value}`" for t in TaskKind)
    out += ["## `tasks`", "", _describe("tasks", used), "",
            f"A list of: {tasks}. Default: `[{', '.join(t.value for t in DEFAULT_TASKS)}]`.", ""]
    out += ["## `task_runner.params`", "",
            "Plan values are scalars (a string, number or boolean). The names are checked when "
            "the plan is loaded; a custom runner's (`module:attr`) are not.", ""]
    for runner, params in registry.RUNNER_PARAMS.items():
        out += [f"### runner `{runner}`", "", "| key | default | description |", "|---|---|---|"]
        out += [f"| `{key}` | {show(default)} | {_describe(f'params.{runner}.{key}', used)} |"
                for key, default in params.items()]
        out.append("")
    out += ["## `network`", "",
            "Transport settings; the defaults live in `openfl_like/transport/settings.py`, and "
            "`FX_*` environment variables override them.", "",
            "| key | type | description |", "|---|---|---|"]
    out += [f"| `network.{key}` | {kind.__name__} | {_describe(f'network.{key}', used)} |"
            for key, kind in registry.NETWORK_KEYS.items()]
    out.append("")
    stale = sorted(set(DESCRIPTIONS) - used)
    if stale:
        raise KeyError(f"plan.reference: descriptions of keys that do not exist: {stale}")
    return "\n".join(out)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
