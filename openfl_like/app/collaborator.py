"""Composition root of a collaborator: its shard, its runner and the gRPC client, in one loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from openfl_like.app.common import Workspace, parse_address, runner_params
from openfl_like.app.locks import ProcessLock
from openfl_like.app.settings import transport_settings
from openfl_like.core.errors import PermissionDeniedError, PlanError
from openfl_like.core.ids import check_name
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    ResultAck,
    TaskResult,
    TasksReply,
)
from openfl_like.federation.collaborator import (
    Collaborator,
    CollaboratorSettings,
    CollaboratorSummary,
)
from openfl_like.pki import PkiStore
from openfl_like.plan.schema import Plan
from openfl_like.runners.base import TaskRunner
from openfl_like.runners.registry import create_runner
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.credentials import TlsFiles

log = get_logger(__name__)


class GrpcAggregatorPort:
    """Adapts AggregatorGRPCClient to the federation's AggregatorPort."""

    def __init__(self, client: AggregatorGRPCClient) -> None:
        self.client = client

    def handshake(self, plan_digest: str, fingerprint: Mapping[str, str]) -> HandshakeReply:
        return self.client.handshake(plan_digest, fingerprint)

    def get_tasks(self) -> TasksReply:
        return self.client.get_tasks()

    def get_aggregated_tensors(self, round_number: int, names: Sequence[str]
                               ) -> dict[str, np.ndarray]:
        tensors = self.client.get_aggregated_tensors(round_number, names)
        return {name: tensor.array for name, tensor in tensors.items()}

    def send_local_task_results(self, result: TaskResult, tensors: Mapping[str, np.ndarray]
                                ) -> ResultAck:
        return self.client.send_local_task_results(result, tensors)

    def heartbeat(self) -> HeartbeatReply:
        return self.client.heartbeat()


def build_runner(plan: Plan, name: str, *, allow_custom: bool = False) -> TaskRunner:
    """The collaborator's runner on its own shard of the plan's data."""
    params = runner_params(plan, allow_custom=allow_custom)
    if plan.task_runner.name == "noop":
        return create_runner("noop", None, seed=plan.data.seed, **params)
    shard_ref = plan.shard_for(name)
    if not isinstance(shard_ref, int):
        raise PlanError(f"data.yaml: {name}: shard files are not supported by the "
                        f"{plan.data.loader!r} loader; give a shard index")
    from openfl_like.data.digits import load_digits_shard

    num_shards = plan.data.num_shards or len(plan.collaborators)
    shard = load_digits_shard(
        shard_ref, num_shards, seed=plan.data.seed, test_fraction=plan.data.test_fraction,
        method=plan.data.split, alpha=plan.data.alpha, valid_fraction=plan.data.valid_fraction,
    )
    log.info("%s: shard %d of %d (%d train, %d valid samples)", name, shard_ref, num_shards,
             shard.num_train, shard.num_valid)
    return create_runner(plan.task_runner.name, shard, seed=plan.data.seed, **params)


def run_collaborator(
    plan: Plan,
    name: str,
    *,
    pki: PkiStore,
    aggregator_address: str | None = None,
    tls_files: TlsFiles | None = None,
    workspace: str | Path | None = None,
    allow_custom: bool = False,
) -> CollaboratorSummary:
    """Join the federation as ``name`` and work until it ends."""
    check_name(name, "collaborator name")
    if name not in plan.collaborators:
        raise PermissionDeniedError(
            f"{name!r} is not a collaborator of this plan (cols.yaml lists: "
            f"{', '.join(plan.collaborators)})"
        )
    ws = Workspace.for_plan(plan, workspace)
    with ProcessLock(ws.locks_dir / f"collaborator-{name}.lock", f"collaborator {name!r}"):
        settings = transport_settings(plan)
        if aggregator_address:
            host, port = parse_address(aggregator_address)
        else:
            host, port = plan.aggregator.host, plan.aggregator.port
        files = None
        if settings.tls:
            files = tls_files or TlsFiles.for_participant(pki, name)
            files.read()  # fail early, naming the missing file
        runner = build_runner(plan, name, allow_custom=allow_custom)
        client = AggregatorGRPCClient(
            host=host, port=port, collaborator_name=name,
            aggregator_name=plan.aggregator.name, federation_uuid=plan.federation_uuid,
            tls_files=files, settings=settings,
        )
        with client:
            collaborator = Collaborator(name, GrpcAggregatorPort(client), runner,
                                        CollaboratorSettings.from_plan(plan))
            return collaborator.run()
