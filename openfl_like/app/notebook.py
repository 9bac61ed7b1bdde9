"""Federate from Python (a notebook): a Keras model object and NumPy arrays per site.

``federate(model, {"site_a": (x, y), ...})`` does what `fx plan run` does, inside this process
and with nothing for the user to write: it puts a plan folder (the initial model as a ``.keras``
file, each site's arrays and data description, the held-out test set), a fresh PKI and the
workspace in ``workdir`` (a new temporary folder unless given), serves the aggregator over
mutual TLS on 127.0.0.1 and runs one collaborator thread per site, calls ``on_round`` with each
closed round's record, and returns the final and best models as Keras models with the history.
The same folder can be federated again with `fx plan run WORKDIR/plan --resume`.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.app.aggregator import start_aggregator
from openfl_like.app.collaborator import run_collaborator
from openfl_like.app.workspace import ensure_pki
from openfl_like.core.errors import ConfigError, FederationError
from openfl_like.pki import PkiStore
from openfl_like.plan.load import load_plan
from openfl_like.plan.write import write_data_description, write_plan_folder
from openfl_like.runners.registry import load_native_model

Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class FederationResult:
    """What a federation produced: Keras models, per-round records, the final metrics."""

    model: Any  # keras.Model: the final global model
    best_model: Any  # keras.Model: the best one by the plan's metric
    history: list[dict[str, Any]]
    final_metrics: dict[str, Any]
    workdir: Path
    collaborators: dict[str, str] = field(default_factory=dict)  # name -> its summary line


def _save_arrays(folder: Path, name: str, arrays: Arrays, valid_fraction: float | None,
                 seed: int) -> str:
    x, y = (np.asarray(a) for a in arrays)
    if len(x) != len(y) or len(x) == 0:
        raise ConfigError(f"{name}: x and y must be non-empty and of the same length "
                          f"(got {len(x)} and {len(y)})")
    np.savez(folder / f"{name}.npz", x_train=x.astype(np.float32), y_train=y)
    params: dict[str, Any] = {"path": f"{name}.npz", "seed": seed}
    if valid_fraction is not None:
        params["valid_fraction"] = valid_fraction
    write_data_description(folder / f"{name}.yaml", "npz", params)
    return f"data/{name}.yaml"


def _plan_document(*, rounds: int, epochs: int, batch_size: int, task: str,
                   features: Sequence[int], classes: Sequence[str], sites: int,
                   learning_rate: float, aggregation: str, with_test: bool) -> dict[str, Any]:
    classification = task == "classification"
    aggregator: dict[str, Any] = {
        "name": "aggregator", "host": "127.0.0.1", "port": 0, "rounds_to_train": rounds,
        "workspace": "workspace", "write_tensorboard": False,
        "best_model": {"metric": "accuracy" if classification else "loss",
                       "direction": "max" if classification else "min"},
    }
    if with_test:
        aggregator["test_data"] = "data/test.yaml"
    contract: dict[str, Any] = {"features": list(features), "dtype": "float32",
                                "label": "classes" if classification else "regression"}
    if classification:
        contract["classes"] = list(classes)
    return {
        "federation": {"name": "notebook"},
        "aggregator": aggregator,
        "collaborator": {"epochs": epochs, "batch_size": batch_size, "heartbeat_seconds": 5},
        "data_contract": contract,
        "task_runner": {"name": "keras", "params": {
            "model": "model.keras", "task": task, "learning_rate": learning_rate}},
        "tasks": ["aggregated_model_validation", "train", "locally_tuned_model_validation"],
        "aggregation": {"name": aggregation},
        "stragglers": {"min_collaborators": sites},
    }


def federate(
    model: Any,
    sites: Mapping[str, Arrays],
    *,
    rounds: int = 5,
    epochs: int = 1,
    batch_size: int = 32,
    task: str = "classification",
    classes: Sequence[str] | None = None,
    test: Arrays | None = None,
    valid_fraction: float = 0.2,
    learning_rate: float = 0.001,
    aggregation: str = "fedavg",
    workdir: str | Path | None = None,
    on_round: Callable[[dict[str, Any]], object] | None = None,
    timeout: float = 3600.0,
    seed: int = 0,
) -> FederationResult:
    """Train ``model`` (a Keras model object) across ``sites`` (name -> (x, y)) and return the
    trained models. Labels are class indices (``classes`` names them; default "0".."n-1") or,
    with ``task="regression"``, float targets. See the module docstring."""
    if not sites:
        raise ConfigError("federate: no sites given")
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="openfl-"))
    plan_dir, data_dir = root / "plan", root / "plan" / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    first_x = np.asarray(next(iter(sites.values()))[0])
    if classes is None and task == "classification":
        labels = np.concatenate([np.asarray(y) for _, y in sites.values()])
        classes = [str(i) for i in range(int(labels.max()) + 1)]
    entries = {name: _save_arrays(data_dir, name, arrays, valid_fraction, seed)
               for name, arrays in sites.items()}
    if test is not None:
        _save_arrays(data_dir, "test", test, None, seed)  # (evaluated whole)
    model.save(plan_dir / "model.keras")
    write_plan_folder(plan_dir, _plan_document(
        rounds=rounds, epochs=epochs, batch_size=batch_size, task=task,
        features=first_x.shape[1:], classes=classes or (), sites=len(sites),
        learning_rate=learning_rate, aggregation=aggregation, with_test=test is not None,
    ), list(sites), entries)
    plan = load_plan(plan_dir)
    pki = PkiStore(root / "pki")
    ensure_pki(pki, aggregator=plan.aggregator.name, collaborators=plan.collaborators)
    running = start_aggregator(plan, pki=pki, port=0)
    address = f"127.0.0.1:{running.port}"
    errors: dict[str, BaseException] = {}
    summaries: dict[str, str] = {}

    def work(name: str) -> None:
        try:
            summaries[name] = run_collaborator(plan, name, pki=pki,
                                               aggregator_address=address).describe()
        except BaseException as exc:  # reported below, with the aggregator's outcome
            errors[name] = exc

    threads = [threading.Thread(target=work, args=(n,), name=f"site-{n}", daemon=True)
               for n in plan.collaborators]
    follower = _follow(running, on_round) if on_round is not None else None
    for thread in threads:
        thread.start()
    try:
        final = running.run(timeout=timeout)
    finally:
        for thread in threads:
            thread.join(30)
        if follower is not None:
            follower.join(5)
    if errors:
        name, exc = next(iter(errors.items()))
        raise FederationError(f"site {name} failed: {exc}") from exc
    outputs = running.workspace.output_dir
    return FederationResult(
        model=load_native_model("keras", outputs / "final_model.keras"),
        best_model=load_native_model("keras", outputs / "best_model.keras"),
        history=running.aggregator.history, final_metrics=dict(final), workdir=root,
        collaborators=summaries)


def _follow(running: Any, on_round: Callable[[dict[str, Any]], object]) -> threading.Thread:
    """Call ``on_round`` with each closed round's record, in order, from a helper thread."""

    def follow() -> None:
        seen = 0
        while True:
            done = running.aggregator.wait_until_done(0.2)
            history = running.aggregator.history
            for record in history[seen:]:
                on_round(record)
            seen = len(history)
            if done:
                return

    thread = threading.Thread(target=follow, name="on-round", daemon=True)
    thread.start()
    return thread
