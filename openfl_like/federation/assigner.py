"""Which tasks each collaborator runs in a round.

Training rounds get the plan's tasks; the final round (after ``rounds_to_train``) only validates
the last global model, so the final model has measured metrics and can compete for "best".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from openfl_like.core.errors import FederationError
from openfl_like.core.messages import TaskKind, TaskSpec
from openfl_like.plan.schema import Plan


class Assigner(Protocol):
    def tasks_for(self, collaborator: str, round_number: int, *, final: bool
                  ) -> tuple[TaskSpec, ...]: ...


class AllTasksAssigner:
    """Every collaborator gets every task of the round (OpenFL's default assigner)."""

    def __init__(self, tasks: Sequence[TaskKind], *, epochs: int, batch_size: int) -> None:
        self.tasks = tuple(tasks)
        self.epochs, self.batch_size = epochs, batch_size

    def _spec(self, kind: TaskKind, round_number: int) -> TaskSpec:
        params: dict[str, float | int | str] = {"batch_size": self.batch_size}
        if kind is TaskKind.TRAIN:
            params["epochs"] = self.epochs
        return TaskSpec(name=kind.value, kind=kind, round_number=round_number, params=params)

    def tasks_for(self, collaborator: str, round_number: int, *, final: bool
                  ) -> tuple[TaskSpec, ...]:
        kinds = [k for k in self.tasks if not final or k is TaskKind.VALIDATE_GLOBAL]
        return tuple(self._spec(kind, round_number) for kind in kinds)


def make_assigner(plan: Plan) -> Assigner:
    if plan.assigner.name == "all_tasks":
        return AllTasksAssigner(plan.tasks, epochs=plan.collaborator.epochs,
                                batch_size=plan.collaborator.batch_size)
    raise FederationError(f"unknown assigner {plan.assigner.name!r}")
