"""Load a site's own data as its description says and check it against the plan's contract.

``fx data check`` runs this before a site joins; the collaborator start will run the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openfl_like.core.errors import DataError
from openfl_like.data.contract_check import check_dataset
from openfl_like.data.dataset import LocalDataset, make_dataset
from openfl_like.data.local import load_local_dataset
from openfl_like.plan.contract import contract_digest
from openfl_like.plan.load import load_plan
from openfl_like.plan.local_data import LocalDataSpec, load_local_data_spec
from openfl_like.plan.registry import import_custom_object, is_object_reference
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


def load_site_data(plan: Plan, spec: LocalDataSpec, *, allow_custom: bool = False
                   ) -> LocalDataset:
    """The site's dataset, checked against the plan's contract when the plan has one.

    A ``module:attr`` loader (the site's own code) runs only when the plan
    (``task_runner.allow_custom_objects``) and the operator (``allow_custom``) both allow it;
    it is called with (params, contract) and returns a LocalDataset or the arrays
    (x_train, y_train) or (x_train, y_train, x_valid, y_valid), held to the same checks.
    """
    if is_object_reference(spec.loader):
        dataset = _custom_dataset(plan, spec, allow_custom=allow_custom)
    else:
        dataset = load_local_dataset(spec.loader, spec.params, contract=plan.data_contract)
    if plan.data_contract is not None:
        check_dataset(dataset, plan.data_contract)
    return dataset


def check_local_data(plan_dir: str | Path, data_file: str | Path, *,
                     allow_custom: bool = False) -> DataCheckReport:
    """Load the plan and the site's data description, read the data, check it."""
    plan = load_plan(plan_dir)
    spec = load_local_data_spec(data_file)
    return DataCheckReport(dataset=load_site_data(plan, spec, allow_custom=allow_custom),
                           contract=plan.data_contract)


def _custom_dataset(plan: Plan, spec: LocalDataSpec, *, allow_custom: bool) -> LocalDataset:
    function = import_custom_object(spec.loader, plan_allows=plan.task_runner.allow_custom_objects,
                                    allow_custom=allow_custom)
    produced = function(dict(spec.params), plan.data_contract)
    if isinstance(produced, LocalDataset):
        return produced
    source = f"{spec.source}: {spec.loader}"
    if isinstance(produced, tuple) and len(produced) in (2, 4):
        arrays = [np.asarray(a) for a in produced]
        valid = (arrays[2], arrays[3]) if len(arrays) == 4 else None
        return make_dataset(spec.params, (arrays[0], arrays[1]), valid, source=source,
                            loader=spec.loader)
    raise DataError(f"{source}: returned {type(produced).__name__}; expected a LocalDataset or "
                    "the arrays (x_train, y_train[, x_valid, y_valid])")
