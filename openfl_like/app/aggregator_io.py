"""What an aggregator reads and reports besides the federation: its initial weights from a
file, its held-out test set, its final metric line, and its events for a supervisor (the
director reads them on an inherited pipe, ``--events-fd``).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.errors import ConfigError
from openfl_like.core.logging import get_logger
from openfl_like.plan.schema import Plan

log = get_logger(__name__)

# What the aggregator tells a supervisor (a director), one JSON object per event:
#   {"type": "listening", "port": P, "federation_uuid": U}    serving
#   {"type": "round", "round": R, "metrics": {task: {..}}, "per_collaborator": {..}, ...}
#   {"type": "final", "metrics": {..}}    finished; {"type": "failed", "reason": "..."}
#   {"type": "stopped"}    stopped on request with the state saved (a restart resumes it)
EventSink = Callable[[Mapping[str, Any]], None]


def events_to_fd(fd: int) -> EventSink:
    """An EventSink writing JSON lines to the file descriptor ``fd`` (flushed per event).
    A reader that went away is logged once and then ignored: the federation goes on."""
    stream = os.fdopen(fd, "w", encoding="utf-8")
    lock = threading.Lock()
    broken: list[bool] = []

    def write(event: Mapping[str, Any]) -> None:
        line = json.dumps(dict(event), default=str) + "\n"
        with lock:
            if broken:
                return
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError) as exc:
                broken.append(True)
                log.warning("events fd %d: cannot write (%s); no more events are sent", fd, exc)

    return write


def weights_from_file(plan: Plan, reference: Mapping[str, np.ndarray]
                      ) -> dict[str, np.ndarray]:
    """``aggregator.initial_weights`` (.npz, no pickle), checked against the runner's own
    initial weights: the same tensor names, shapes and dtypes, finite values."""
    path = Path(plan.aggregator.initial_weights).expanduser()
    if not path.is_absolute():
        path = plan.plan_dir / path
    where = f"aggregator.initial_weights: {path}"
    try:
        with np.load(path, allow_pickle=False) as archive:
            loaded = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot be read as NumPy weights ({exc})") from None
    if set(loaded) != set(reference):
        missing = sorted(set(reference) - set(loaded))
        extra = sorted(set(loaded) - set(reference))
        raise ConfigError(f"{where}: tensors differ from the model's (missing {missing}, "
                          f"unexpected {extra})")
    for name, want in reference.items():
        got = loaded[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise ConfigError(f"{where}: {name} is {got.dtype}{list(got.shape)}, the model "
                              f"needs {want.dtype}{list(want.shape)}")
        if got.dtype.kind in "fc" and not np.isfinite(got).all():
            raise ConfigError(f"{where}: {name} has values that are not finite")
    return loaded


def uses_digits(plan: Plan) -> bool:
    """The plan trains on the built-in digits: no data contract and only shard indices."""
    return plan.data_contract is None and plan.data.loader == "digits" and all(
        isinstance(ref, int) for ref in plan.shards.values())


def final_test_set(plan: Plan) -> tuple[np.ndarray, np.ndarray, str]:
    """(x, y, what) of the aggregator's held-out test data: ``aggregator.test_data`` (every
    sample of it, train and valid parts alike) or the digits test split."""
    if plan.aggregator.test_data:
        from openfl_like.app.data import load_site_data
        from openfl_like.plan.local_data import load_local_data_spec

        path = Path(plan.aggregator.test_data).expanduser()
        if not path.is_absolute():
            path = plan.plan_dir / path
        data = load_site_data(plan, load_local_data_spec(path))
        x = np.concatenate([data.x_train, data.x_valid])
        y = np.concatenate([data.y_train, data.y_valid])
        return x, y, f"the test data {data.source}"
    from openfl_like.data.digits import load_digits_test_set

    x_test, y_test = load_digits_test_set(seed=plan.data.seed,
                                          test_fraction=plan.data.test_fraction)
    return x_test, y_test, "the held-out test set"


def final_validation_metrics(history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The sites' validation of the final model: the last round's aggregated_model_validation
    metrics (already sample-weighted means over the sites); {} when there are none."""
    for record in reversed(history):
        found = (record.get("metrics") or {}).get("aggregated_model_validation")
        if found:
            return {k: float(v) for k, v in found.items()}
    return {}


def final_metric_line(final: Mapping[str, Any]) -> str:
    """'final test accuracy: 0.9722' (test data), or the sites' validation mean without it."""
    for prefix, what in (("test_", "final test"),
                         ("valid_", "final validation")):
        scores = {k[len(prefix):]: v for k, v in final.items()
                  if k.startswith(prefix) and isinstance(v, float)}
        if not scores:
            continue
        metric = "accuracy" if "accuracy" in scores else min(scores)
        where = " (mean of the sites' validation)" if prefix == "valid_" else ""
        return f"{what} {metric}{where}: {scores[metric]:.4f}"
    return ""
