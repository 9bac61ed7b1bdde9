"""Test doubles for the envoy: an in-memory EnvoyDirectorPort and a fake collaborator script.

The fake director notifies one condition on every change, so tests wait for what they expect
(``wait_for``) instead of sleeping. The fake collaborator reads what to do from ``mode.txt`` in
the experiment's package: ``ok`` (exit 0), ``fail`` (exit 3 after an error line), ``hold``
(run until SIGTERM, then exit 0), ``stubborn`` (ignore SIGTERM: only SIGKILL ends it).
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from openfl_like.core.errors import UnavailableError
from openfl_like.core.experiments import (
    Broadcast,
    BroadcastKind,
    EnvoyAssignment,
    EventKind,
    FeedbackItem,
    ShardInfo,
)
from openfl_like.director.envoy_runs import LaunchSpec
from openfl_like.plan.envoy_config import EnvoyConfig, parse_envoy_config

FAKE_COLLABORATOR = r'''
import json, os, signal, sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
mode = open(os.path.join(args["--plan"], "mode.txt")).read().strip()
with open("pid", "w") as f:
    f.write(str(os.getpid()))
events = os.fdopen(int(args["--events-fd"]), "w", buffering=1)
def stopping(signum, frame):
    print("stopping on SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else stopping)
print("starting", flush=True)
for r in range(2):
    print(f"round {r}", flush=True)
    events.write(json.dumps({"round": r, "task": "train", "metrics": {"loss": 1.0 / (r + 1)},
                             "samples": 10}) + "\n")
if mode == "fail":
    print("fx: error: something broke", file=sys.stderr, flush=True)
    sys.exit(3)
if mode in ("hold", "stubborn"):
    print("holding", flush=True)
    while True:
        signal.pause()
print("done", flush=True)
'''


def fake_command(script: Path) -> Callable[[LaunchSpec], list[str]]:
    def build(spec: LaunchSpec) -> list[str]:
        return [sys.executable, str(script), "--events-fd", str(spec.events_fd),
                "--plan", str(spec.plan_dir)]
    return build


@dataclass
class Failure:
    experiment: str
    code: int
    description: str
    lines: list[str]


@dataclass
class FakeDirector:
    """An in-memory EnvoyDirectorPort (see module docstring)."""

    heartbeat_period: float = 0.05
    modes: dict[str, str] = field(default_factory=dict)  # experiment -> fake collaborator mode
    fail_feedback: int = 0  # the next N send_feedback calls raise UnavailableError
    cond: threading.Condition = field(default_factory=threading.Condition)
    offers: deque[str] = field(default_factory=deque)
    broadcasts: deque[Broadcast] = field(default_factory=deque)
    shards: list[ShardInfo] = field(default_factory=list)
    statuses: list[tuple[list[str], list[str]]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    feedback: dict[str, dict[int, FeedbackItem]] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)

    # -- the test's side ---------------------------------------------------------------------
    def offer(self, experiment: str) -> None:
        with self.cond:
            self.offers.append(experiment)
            self.cond.notify_all()

    def broadcast(self, kind: BroadcastKind, experiment: str = "", text: str = "") -> None:
        with self.cond:
            self.broadcasts.append(Broadcast(id=str(len(self.broadcasts)), kind=kind,
                                             experiment=experiment, text=text))
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0,
                 what: str = "condition") -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out waiting for {what}; {self.describe()}")

    def items(self, experiment: str) -> list[FeedbackItem]:
        with self.cond:
            held = self.feedback.get(experiment, {})
            return [held[k] for k in sorted(held)]

    def log_lines(self, experiment: str) -> list[str]:
        return [i.text for i in self.items(experiment) if i.kind is EventKind.LOG]

    def last_status(self) -> tuple[list[str], list[str]]:
        with self.cond:
            return self.statuses[-1] if self.statuses else ([], [])

    def describe(self) -> str:
        return (f"statuses[-3:]={self.statuses[-3:]} failures={self.failures} "
                f"feedback={ {k: len(v) for k, v in self.feedback.items()} } "
                f"downloads={self.downloads}")

    # -- EnvoyDirectorPort -------------------------------------------------------------------
    def update_shard_info(self, shard: ShardInfo) -> str:
        with self.cond:
            self.shards.append(shard)
            self.cond.notify_all()
        return "registered"

    def update_envoy_status(self, running: Sequence[str], awaiting: Sequence[str]) -> float:
        with self.cond:
            self.statuses.append((list(running), list(awaiting)))
            self.cond.notify_all()
        return self.heartbeat_period

    def wait_experiment(self, wait_seconds: float) -> EnvoyAssignment:
        with self.cond:
            self.cond.wait_for(lambda: self.offers or self.broadcasts, wait_seconds)
            messages = tuple(self.broadcasts)
            self.broadcasts.clear()
            experiment = self.offers.popleft() if self.offers else ""
            return EnvoyAssignment(experiment=experiment, messages=messages)

    def get_experiment_data(self, experiment: str, dest: Path, *, max_bytes: int) -> list[Path]:
        dest.mkdir(parents=True, exist_ok=True)
        files = {"plan.yaml": "federation: {name: fake}\n",
                 "mode.txt": self.modes.get(experiment, "ok") + "\n"}
        written = []
        for name, text in files.items():
            (dest / name).write_text(text)
            written.append(dest / name)
        with self.cond:
            self.downloads.append(experiment)
            self.cond.notify_all()
        return written

    def set_experiment_failed(self, experiment: str, code: int, description: str,
                              last_log_lines: Sequence[str]) -> None:
        with self.cond:
            self.failures.append(Failure(experiment, code, description, list(last_log_lines)))
            self.cond.notify_all()

    def send_feedback(self, experiment: str, items: Sequence[FeedbackItem]) -> int:
        with self.cond:
            if items and self.fail_feedback > 0:
                self.fail_feedback -= 1
                raise UnavailableError("director briefly unavailable")
            held = self.feedback.setdefault(experiment, {})
            for item in items:
                held.setdefault(item.seq, item)  # a seq already held is dropped
            self.cond.notify_all()
            return max(held, default=0)


def write_site(root: Path, *, features: int = 4, review: bool = False,
               contract_features: int = 4) -> Path:
    """An npz dataset, its description and an envoy.yaml in ``root``; returns envoy.yaml."""
    rng = np.random.default_rng(0)
    (root / "data").mkdir(parents=True, exist_ok=True)
    np.savez(root / "data" / "site.npz",
             x_train=rng.random((30, features), dtype=np.float32),
             y_train=rng.integers(0, 2, 30), x_valid=rng.random((6, features), dtype=np.float32),
             y_valid=rng.integers(0, 2, 6))
    (root / "data" / "{name}.yaml".replace("{name}", "site1")).write_text(
        yaml.safe_dump({"loader": "npz", "params": {"path": "site.npz"}}))
    config = {
        "envoy": {"director": {"host": "127.0.0.1", "port": 50060, "name": "director",
                               "federation": "fed1"},
                  "workspace": "ws/{name}", "review_experiments": review,
                  "max_experiment_bytes": "1MiB", "description": "test site {name}"},
        "data": "data/{name}.yaml",
        "contract": {"features": [contract_features], "dtype": "float32", "label": "classes",
                     "classes": ["a", "b"]},
        "network": {"tls": False},
    }
    path = root / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def site_config(root: Path, **kwargs: Any) -> EnvoyConfig:
    path = write_site(root, **kwargs)
    return parse_envoy_config(yaml.safe_load(path.read_text()), "site1", base_dir=root,
                              shown="envoy.yaml")
