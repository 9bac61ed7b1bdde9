"""Plan identity: a canonical dict, a digest, a per-setting fingerprint and readable differences.

Sites compare fingerprints at the handshake, so a mismatch is reported as the settings that differ
("aggregator.rounds_to_train: 10 here, 5 at collaborator col2"), not as two unequal hashes.
Site-local settings (where the aggregator listens, its workspace, output switches, its test data,
transport tuning, the cols.yaml/data.yaml files) are left out: they may legitimately differ between
hosts.
A model file the plan names (``task_runner.params.model``, relative to the plan folder) enters by
its SHA-256: two sites with the same path but different initial models are told so by name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openfl_like.plan.schema import Plan

# Key prefixes that each site may set for itself; not part of the digest or the fingerprint.
LOCAL_KEYS: tuple[str, ...] = (
    "aggregator.host",
    "aggregator.workspace",
    "aggregator.write_tensorboard",
    "aggregator.write_plot",
    "aggregator.test_data",
    "aggregator.initial_weights",
    "collaborator.heartbeat_seconds",
    "network",
    "collaborators",
    "shards",
)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and isinstance(value.value, str):  # str enums (TaskKind)
        return value.value
    return value


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    """The resolved plan as JSON-able data (everything but the folder it was loaded from)."""
    data = _plain(plan)
    data.pop("plan_dir", None)
    if data.get("data_contract") is None:  # optional: a plan without one keeps its digest
        data.pop("data_contract", None)
    return data


def _flatten(prefix: str, value: Any, out: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else key, item, out)
    else:
        out[prefix] = json.dumps(value, sort_keys=True, separators=(",", ":"))


def _is_local(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in LOCAL_KEYS)


MODEL_FILE_KEY = "task_runner.params.model (sha256)"


def model_file_sha256(plan: Plan) -> str | None:
    """SHA-256 (hex) of the file ``task_runner.params.model`` names, when it names one.

    The bytes are hashed, not the model loaded: plan/ never imports TensorFlow.
    """
    model = plan.task_runner.params.get("model")
    if not isinstance(model, str) or not model:
        return None
    path = Path(model).expanduser()
    if not path.is_absolute():
        path = plan.plan_dir / path
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plan_fingerprint(plan: Plan) -> dict[str, str]:
    """Flattened key path -> canonical JSON value, for the settings every site must share."""
    flat: dict[str, str] = {}
    _flatten("", plan_to_dict(plan), flat)
    model_hash = model_file_sha256(plan)
    if model_hash is not None:
        flat[MODEL_FILE_KEY] = json.dumps(model_hash)
    return {k: v for k, v in sorted(flat.items()) if not _is_local(k)}


def _digest(fingerprint: Mapping[str, str]) -> str:
    canonical = json.dumps(dict(sorted(fingerprint.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def plan_digest(plan: Plan) -> str:
    """sha256 (hex) of the canonical fingerprint, federation_uuid included."""
    return _digest(plan_fingerprint(plan))


def settings_digest(plan: Plan) -> str:
    """Digest of the shared settings without the federation_uuid (from which it is derived)."""
    fingerprint = plan_fingerprint(plan)
    fingerprint.pop("federation.federation_uuid", None)
    return _digest(fingerprint)


def describe_differences(
    mine: Mapping[str, str], theirs: Mapping[str, str], *, where: str = "the peer"
) -> list[str]:
    """One line per differing setting, e.g. ``tasks: [...] here, [...] at collaborator col2``."""
    lines: list[str] = []
    for key in sorted(set(mine) | set(theirs)):
        here, there = mine.get(key), theirs.get(key)
        if here == there:
            continue
        left = here if here is not None else "(not set)"
        right = there if there is not None else "(not set)"
        lines.append(f"{key}: {left} here, {right} at {where}")
    return lines
