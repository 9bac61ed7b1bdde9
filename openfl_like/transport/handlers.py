"""What the transport needs from the logic behind it, as typing Protocols.

The federation runtime satisfies these structurally; the transport never imports it. Handlers
raise ``openfl_like.core.errors`` exceptions; the servicer maps them to gRPC status codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    NamedTensor,
    ResultAck,
    TaskResult,
    TasksReply,
    TensorStream,
)


class AggregatorHandler(Protocol):
    def is_authorized(self, collaborator: str) -> bool:
        """True when ``collaborator`` is a participant of this plan (cols.yaml)."""
        ...

    def handshake(
        self, collaborator: str, plan_digest: str, plan_fingerprint: Mapping[str, str]
    ) -> HandshakeReply:
        """Compare plans; raise PlanMismatchError naming the settings that differ.

        A handler whose handshake also takes ``sample_counts`` and/or ``contract_digest``
        (keywords) is given the collaborator's declared counts and data-contract digest."""
        ...

    def heartbeat(self, collaborator: str) -> HeartbeatReply: ...

    def get_tasks(self, collaborator: str, wait_seconds: float) -> TasksReply:
        """Long-poll: block up to ``wait_seconds`` until there is work or the federation ends."""
        ...

    def get_aggregated_tensors(
        self, collaborator: str, round_number: int, names: Sequence[str], tags: Sequence[str]
    ) -> Iterable[NamedTensor]:
        """Global-model tensors only; never another collaborator's update (PermissionDenied)."""
        ...

    def send_local_task_results(
        self, result: TaskResult, tensors: Iterator[NamedTensor]
    ) -> ResultAck:
        """Consume the streamed tensors of one result; idempotent on ``result.key``."""
        ...

    def status(self) -> Mapping[str, object]:
        """A JSON-able snapshot for `fx aggregator status`."""
        ...


@runtime_checkable
class StreamingUploads(Protocol):
    """Optional capability of an AggregatorHandler: take uploads unjoined, chunk by chunk.

    When the handler has this method the servicer calls it instead of
    ``send_local_task_results``, so an upload holds about one chunk in memory, not one tensor.
    """

    def send_local_task_result_streams(
        self, result: TaskResult, tensors: Iterator[TensorStream]
    ) -> ResultAck:
        """As ``send_local_task_results``; read each stream's ``chunks`` before the next one."""
        ...
