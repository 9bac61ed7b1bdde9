"""A director set-up in a temporary folder for the end-to-end tests: configs, PKI, processes.

``DirectorLab`` writes director.yaml (free ports), one envoy.yaml for every envoy (digits
shards), a numpy experiment plan (fast: the tests are about the workflow, not the model), and
a PKI with the director, the envoys and two experimenters; it starts `fx director start` and
`fx envoy start` through the test's ``ProcessRegistry`` (so every process is killed after the
test) and runs `fx experiment ...` commands.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from openfl_like.app.workspace import ensure_director_pki
from openfl_like.pki import PkiStore
from tests.e2e.conftest import FxProcess, ProcessRegistry, free_port, fx_env, run_fx

ENVOYS = ("env_a", "env_b", "env_c")
EXPERIMENTERS = ("alice", "bob")
FEDERATION = "e2e_lab"
DIGITS_CONTRACT = {
    "features": [64], "dtype": "float32", "label": "classes",
    "classes": [str(i) for i in range(10)],
}


def numpy_plan(rounds: int = 3, *, min_collaborators: int = 2, deadline: float = 30,
               liveness: float = 10, epochs: int = 1, **extra: Any) -> dict[str, Any]:
    """An experiment plan: numpy softmax regression on the envoys' digits shards."""
    plan: dict[str, Any] = {
        "federation": {"name": "digits_softmax"},
        "aggregator": {"rounds_to_train": rounds,
                       "best_model": {"metric": "accuracy", "direction": "max"},
                       "write_plot": False, "write_tensorboard": False},
        "collaborator": {"epochs": epochs, "batch_size": 32, "heartbeat_seconds": 1},
        "data_contract": dict(DIGITS_CONTRACT),
        "task_runner": {"name": "numpy",
                        "params": {"model": "softmax", "optimizer": "sgd", "learning_rate": 0.1}},
        "tasks": ["aggregated_model_validation", "train", "locally_tuned_model_validation"],
        "aggregation": {"name": "fedavg"},
        "stragglers": {"enabled": True, "round_deadline_seconds": deadline,
                       "min_collaborators": min_collaborators,
                       "on_deadline_without_quorum": "wait",
                       "liveness_timeout_seconds": liveness},
        "network": {"tls": True, "retry_total_seconds": 120},
    }
    for dotted, value in extra.items():
        node = plan
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return plan


@dataclass
class DirectorLab:
    root: Path
    procs: ProcessRegistry
    heartbeat_seconds: float = 1.0
    max_running: int = 2
    max_package_bytes: str = "8MiB"
    port: int = field(default_factory=free_port)
    director: FxProcess | None = None
    envoys: dict[str, FxProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pki = self.root / "pki"
        ensure_director_pki(PkiStore(self.pki), director="director", envoys=ENVOYS,
                            experimenters=EXPERIMENTERS)
        (self.root / "data").mkdir(exist_ok=True)
        for index, name in enumerate(ENVOYS):
            (self.root / "data" / f"{name}.yaml").write_text(yaml.safe_dump(
                {"loader": "digits", "params": {"shard": index, "num_shards": len(ENVOYS)}}))
        (self.root / "data" / "test.yaml").write_text(
            yaml.safe_dump({"loader": "digits_test", "params": {}}))
        low = free_port()
        self.write_director_config(aggregator_ports=[low, low + 30])
        for config, review in (("envoy.yaml", False), ("envoy_review.yaml", True)):
            (self.root / config).write_text(yaml.safe_dump({
                "envoy": {"director": {"host": "127.0.0.1", "port": self.port,
                                       "name": "director", "federation": FEDERATION},
                          "workspace": "workspace/{name}", "description": "digits shard",
                          "review_experiments": review},
                "data": "data/{name}.yaml",
                "contract": dict(DIGITS_CONTRACT),
            }, sort_keys=False))

    def write_director_config(self, **changes: Any) -> None:
        director = {
            "name": "director", "host": "127.0.0.1", "port": self.port,
            "federation": FEDERATION, "workspace": "workspace/director",
            "heartbeat_seconds": self.heartbeat_seconds,
            "max_running_experiments": self.max_running,
            "max_package_bytes": self.max_package_bytes, "test_data": "data/test.yaml",
        }
        director.update(changes)
        (self.root / "director.yaml").write_text(yaml.safe_dump({"director": director},
                                                                sort_keys=False))

    # -- processes ---------------------------------------------------------------------------

    def start_director(self, *, timeout: float = 60) -> FxProcess:
        self.director = self.procs.start("director", "start", "-c", self.root / "director.yaml",
                                         "--pki-dir", self.pki, name="director", cwd=self.root)
        self.director.stderr.wait_for(r"listening on", timeout)
        return self.director

    def start_envoy(self, name: str, *, config: str = "envoy.yaml",
                    timeout: float = 60) -> FxProcess:
        process = self.procs.start("envoy", "start", "-n", name, "-c", self.root / config,
                                   "--pki-dir", self.pki, name=name, cwd=self.root)
        self.envoys[name] = process
        return process

    def wait_envoys_online(self, names: tuple[str, ...], *, timeout: float = 60) -> None:
        self.wait_for(lambda rows: {r["name"] for r in rows if r.get("online")} >= set(names),
                      lambda: self.envoy_rows(), timeout=timeout, what=f"envoys {names} online")

    # -- the experimenter's CLI --------------------------------------------------------------

    def connect_args(self, user: str = "alice") -> list[str]:
        return ["--director", f"127.0.0.1:{self.port}", "-u", user, "--federation", FEDERATION,
                "--pki-dir", str(self.pki)]

    def fx(self, *args: str | Path, user: str = "alice",
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_fx(*args, *self.connect_args(user), cwd=self.root, timeout=timeout,
                      env=fx_env())

    def fx_ok(self, *args: str | Path, user: str = "alice",
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = self.fx(*args, user=user, timeout=timeout)
        command = " ".join(map(str, args))
        assert result.returncode == 0, (f"fx {command} failed ({result.returncode})\n"
                                        f"{result.stdout}\n{result.stderr}\n"
                                        f"{self.procs.report()}")
        return result

    def write_plan(self, name: str, plan: Mapping[str, Any]) -> Path:
        folder = self.root / "experiments" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "plan.yaml").write_text(yaml.safe_dump(dict(plan), sort_keys=False))
        return folder

    def submit(self, name: str, plan: Mapping[str, Any], *, user: str = "alice",
               model: Path | None = None) -> subprocess.CompletedProcess[str]:
        folder = self.write_plan(name, plan)
        extra = ["--model", str(model)] if model is not None else []
        return self.fx("experiment", "submit", folder, "--name", name, *extra, user=user)

    def status(self, name: str, user: str = "alice") -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            self.fx_ok("experiment", "status", name, "--json", user=user).stdout)
        return result

    def envoy_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = json.loads(
            self.fx_ok("director", "envoys", "--json").stdout)
        return rows

    def wait_state(self, name: str, states: tuple[str, ...], *, timeout: float,
                   user: str = "alice") -> dict[str, Any]:
        return self.wait_for(lambda s: s.get("state") in states,
                             lambda: self.status(name, user), timeout=timeout,
                             what=f"{name} in {states}")

    def wait_for(self, predicate: Callable[[Any], bool], read: Callable[[], Any], *,
                 timeout: float, what: str) -> Any:
        """Re-read ``read()`` until ``predicate`` holds (each read is one CLI call, which is
        itself the pacing; a short pause keeps it from spinning)."""
        end = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < end:
            last = read()
            if predicate(last):
                return last
            time.sleep(0.3)
        raise AssertionError(f"not {what} within {timeout:g} s; last: {last}\n"
                             f"{self.procs.report()}")
