"""Load a site's own data as its description says and check it against the plan's contract.

``fx data check`` runs this before a site joins; the collaborator start will run the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from openfl_like.data.contract_check import check_dataset
from openfl_like.data.dataset import LocalDataset
from openfl_like.data.local import load_local_dataset
from openfl_like.plan.contract import contract_digest
from openfl_like.plan.load import load_plan
from openfl_like.plan.local_data import LocalDataSpec, load_local_data_spec
from openfl_like.plan.schema import DataContract, Plan


@dataclass(frozen=True)
class DataCheckReport:
    """What the check found: the data, the contract it was held to (None: no contract)."""

    dataset: LocalDataset
    contract: DataContract | None

    @property
    def contract_digest(self) -> str | None:
        return contract_digest(self.contract) if self.contract else None

    def class_counts(self) -> tuple[tuple[str, int], ...]:
        """(class name, training samples) in contract order; () for regression or no contract."""
        if self.contract is None or self.contract.label != "classes":
            return ()
        counts = self.dataset.class_counts(len(self.contract.classes))
        return tuple(zip(self.contract.classes, counts, strict=True))


def load_site_data(plan: Plan, spec: LocalDataSpec) -> LocalDataset:
    """The site's dataset, checked against the plan's contract when the plan has one."""
    dataset = load_local_dataset(spec.loader, spec.params, contract=plan.data_contract)
    if plan.data_contract is not None:
        check_dataset(dataset, plan.data_contract)
    return dataset


def check_local_data(plan_dir: str | Path, data_file: str | Path) -> DataCheckReport:
    """Load the plan and the site's data description, read the data, check it."""
    plan = load_plan(plan_dir)
    spec = load_local_data_spec(data_file)
    return DataCheckReport(dataset=load_site_data(plan, spec), contract=plan.data_contract)
