"""Federation plans: plan.yaml + cols.yaml + data.yaml -> a validated, typed ``Plan``."""

from openfl_like.plan.digest import (
    describe_differences,
    plan_digest,
    plan_fingerprint,
    plan_to_dict,
)
from openfl_like.plan.load import load_plan, parse_plan
from openfl_like.plan.registry import import_custom_object
from openfl_like.plan.schema import Plan

__all__ = [
    "Plan",
    "describe_differences",
    "import_custom_object",
    "load_plan",
    "parse_plan",
    "plan_digest",
    "plan_fingerprint",
    "plan_to_dict",
]
