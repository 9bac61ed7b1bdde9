"""The JSON documents the director returns to experimenters (data only, keys documented here).

``experiment_list``:   {"experiments": [{name, kind, state, reason, created, started, ended}]}
``experiment_status``: {name, kind, state, reason, created, started, ended, aggregator,
                        round, rounds_total, last_metrics, final_metrics, awaiting_approval,
                        envoys: {envoy: {state, reason, online, last_log_lines}},
                        validation (validate kind): {per_envoy: {envoy: metrics},
                                                     weighted: metrics}}
``experiment_description``: {name, kind, owner, state, federation_uuid, port, envoys,
                        plan: {rounds, tasks, task_runner, aggregation, mode, contract_digest,
                               model_file, model_sha256, quorum}}
``envoy_list``:        {"heartbeat_seconds": h, "envoys": [{name, online,
                        last_heartbeat_age_seconds, registered, contract, contract_digest,
                        sample_counts, description, running_experiments}]}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from openfl_like.core.experiments import ExperimentKind, ExperimentState
from openfl_like.director.registry import (
    ENVOY_AWAITING,
    ENVOY_FAILED,
    ENVOY_REJECTED,
    ENVOY_RUNNING,
    EnvoyExperimentState,
    EnvoyRecord,
    ExperimentRecord,
)

VALIDATION_TASK = "aggregated_model_validation"


def contract_digest_of(contract: Mapping[str, Any]) -> str:
    canonical = json.dumps(dict(contract), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def experiment_list(records: Sequence[ExperimentRecord]) -> dict[str, Any]:
    return {"experiments": [
        {"name": r.name, "kind": r.kind.value, "state": r.state.value, "reason": r.reason,
         "created": r.created, "started": r.started, "ended": r.ended} for r in records]}


def _validation(record: ExperimentRecord) -> dict[str, Any]:
    progress = record.progress or {}
    per_envoy = {
        envoy: {k: v for k, v in tasks.get(VALIDATION_TASK, {}).items()}
        for envoy, tasks in (progress.get("per_collaborator") or {}).items()
        if VALIDATION_TASK in tasks}
    weighted = (progress.get("metrics") or {}).get(VALIDATION_TASK, {})
    return {"per_envoy": per_envoy, "weighted": dict(weighted)}


def experiment_status(record: ExperimentRecord, envoy_states: Mapping[str, EnvoyExperimentState],
                      online: Mapping[str, bool], aggregator: str) -> dict[str, Any]:
    awaiting = sorted(n for n, s in envoy_states.items() if s.state == ENVOY_AWAITING)
    state = record.state
    if state is ExperimentState.STARTING and awaiting:
        state = ExperimentState.AWAITING_APPROVAL  # shown, not stored: it follows the envoys
    envoys: dict[str, Any] = {}
    for name in record.envoys:
        entry = envoy_states.get(name)
        info: dict[str, Any] = {"state": entry.state if entry else "chosen",
                                "reason": entry.reason if entry else "",
                                "online": bool(online.get(name))}
        if entry is not None and entry.state in (ENVOY_FAILED, ENVOY_REJECTED):
            info["last_log_lines"] = list(entry.last_lines)
        envoys[name] = info
    progress = record.progress or {}
    status: dict[str, Any] = {
        "name": record.name, "kind": record.kind.value, "state": state.value,
        "reason": record.reason, "created": record.created, "started": record.started,
        "ended": record.ended, "aggregator": aggregator if record.port else "",
        "round": progress.get("round"), "rounds_total": record.summary.get("rounds"),
        "last_metrics": progress.get("metrics") or {},
        "final_metrics": dict(record.final_metrics), "awaiting_approval": awaiting,
        "envoys": envoys,
    }
    if record.kind is ExperimentKind.VALIDATE:
        status["validation"] = _validation(record)
    return status


def experiment_description(record: ExperimentRecord) -> dict[str, Any]:
    return {"name": record.name, "kind": record.kind.value, "owner": record.owner,
            "state": record.state.value, "federation_uuid": record.federation_uuid,
            "port": record.port, "envoys": list(record.envoys),
            "package_sha256": record.package_sha256, "plan": dict(record.summary)}


def envoy_list(envoys: Sequence[EnvoyRecord], *, now: float, heartbeat_seconds: float,
               running: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    return {"heartbeat_seconds": heartbeat_seconds, "envoys": [
        {"name": e.name, "online": is_online(e, now, heartbeat_seconds),
         "last_heartbeat_age_seconds": max(0.0, now - e.last_heartbeat),
         "registered": e.registered, "contract": dict(e.shard.contract),
         "contract_digest": contract_digest_of(e.shard.contract),
         "sample_counts": dict(e.shard.sample_counts), "description": e.shard.description,
         "running_experiments": list(running.get(e.name, ()))} for e in envoys]}


def is_online(envoy: EnvoyRecord, now: float, heartbeat_seconds: float) -> bool:
    """Online unless it missed two heartbeat periods."""
    return now - envoy.last_heartbeat <= 2 * heartbeat_seconds


def running_by_envoy(states: Mapping[str, Mapping[str, EnvoyExperimentState]]
                     ) -> dict[str, list[str]]:
    """experiment -> {envoy: state} turned into envoy -> [experiments it runs]."""
    out: dict[str, list[str]] = {}
    for experiment, per_envoy in states.items():
        for envoy, state in per_envoy.items():
            if state.state == ENVOY_RUNNING:
                out.setdefault(envoy, []).append(experiment)
    return out
