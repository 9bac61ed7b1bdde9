"""Which registered envoys can run a plan: their data contract equals the plan's.

Contracts are compared key by key in ``contract_to_dict`` form, so a refusal says what differs
("site_b: classes differ: plan ['a', 'b'] vs envoy ['a', 'c']"), not just "no match".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from openfl_like.core.errors import PlanError
from openfl_like.plan.contract import contract_to_dict
from openfl_like.plan.schema import DataContract


@dataclass(frozen=True)
class EnvoyView:
    """What matching needs to know of an envoy."""

    name: str
    contract: Mapping[str, Any]
    online: bool


@dataclass(frozen=True)
class MatchResult:
    matching: tuple[str, ...]  # online envoys with the plan's contract, by name
    offline: tuple[str, ...]  # envoys with the contract that are offline
    differences: Mapping[str, str] = field(default_factory=dict)  # envoy -> what differs


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def contract_differences(plan: Mapping[str, Any], envoy: Mapping[str, Any]) -> list[str]:
    """'<key> differ(s): plan X vs envoy Y' for each differing key (empty: equal)."""
    out = []
    for key in sorted(set(plan) | set(envoy)):
        mine, theirs = _norm(plan.get(key)), _norm(envoy.get(key))
        if mine != theirs:
            verb = "differ" if key.endswith("s") else "differs"
            out.append(f"{key} {verb}: plan {mine!r} vs envoy {theirs!r}")
    return out


def match_envoys(contract: DataContract, envoys: Sequence[EnvoyView]) -> MatchResult:
    wanted = contract_to_dict(contract)
    matching, offline, differences = [], [], {}
    for envoy in sorted(envoys, key=lambda e: e.name):
        diff = contract_differences(wanted, envoy.contract)
        if diff:
            differences[envoy.name] = "; ".join(diff)
        elif envoy.online:
            matching.append(envoy.name)
        else:
            offline.append(envoy.name)
    return MatchResult(tuple(matching), tuple(offline), differences)


def required_envoys(min_collaborators: int, stragglers_enabled: bool) -> int:
    """How many matching online envoys a plan needs (1 when it leaves the quorum to a
    majority of whoever matches, or when stragglers are off)."""
    return max(1, min_collaborators) if stragglers_enabled else 1


def choose_envoys(contract: DataContract, envoys: Sequence[EnvoyView], *, needed: int
                  ) -> tuple[str, ...]:
    """The matching online envoys, or a PlanError naming every envoy and why it is unusable."""
    result = match_envoys(contract, envoys)
    if len(result.matching) >= needed:
        return result.matching
    reasons = [f"{name}: {why}" for name, why in result.differences.items()]
    reasons += [f"{name}: offline" for name in result.offline]
    found = ", ".join(result.matching) or "none"
    detail = "; ".join(reasons) if reasons else "no envoy is registered"
    raise PlanError(f"data_contract: {len(result.matching)} online envoy(s) match the plan "
                    f"({found}), {needed} needed: {detail}")
