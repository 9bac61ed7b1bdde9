"""Shared helpers of the director tests: configs, packages, a fake launcher, a fake clock."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from openfl_like.core.experiments import IncomingFile, ShardInfo
from openfl_like.director.launcher import LaunchCallbacks, LaunchSpec
from openfl_like.plan.director_config import DirectorConfig, DirectorSettings

CONTRACT: dict[str, Any] = {"features": [4], "dtype": "float32", "label": "classes",
                            "classes": ["a", "b"]}
# contract_to_dict form of CONTRACT, as an envoy registers it
CONTRACT_DICT: dict[str, Any] = {"features": [4], "dtype": "float32", "label": "classes",
                                 "classes": ["a", "b"], "image_size": None,
                                 "color_mode": None, "columns": [], "label_column": "label"}


def plan_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "aggregator": {"rounds_to_train": 1, "write_tensorboard": False, "write_plot": False},
        "task_runner": {"name": "numpy"},
        "data_contract": dict(CONTRACT),
        "network": {"tls": False},
        "stragglers": {"min_collaborators": 1},
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def incoming(name: str, data: bytes, *, sha: str | None = None, chunk: int = 7) -> IncomingFile:
    chunks = (data[i:i + chunk] for i in range(0, len(data), chunk))
    return IncomingFile(path=name, size=len(data),
                        sha256=sha or hashlib.sha256(data).hexdigest(), chunks=iter(chunks))


def package(doc: Mapping[str, Any] | None = None, **extra: bytes) -> Iterator[IncomingFile]:
    files = [incoming("plan.yaml", yaml.safe_dump(dict(doc or plan_doc())).encode())]
    files += [incoming(name.replace("_", "."), data) for name, data in extra.items()]
    return iter(files)


def shard(contract: Mapping[str, Any] | None = None) -> ShardInfo:
    return ShardInfo(contract=dict(contract or CONTRACT_DICT),
                     sample_counts={"train": 80, "valid": 20}, description="test site")


def make_config(workspace: Path, **settings: Any) -> DirectorConfig:
    base = DirectorSettings(workspace=workspace, heartbeat_seconds=5.0,
                            aggregator_ports=(61000, 61009))
    return DirectorConfig(director=replace(base, **settings))


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeHandle:
    spec: LaunchSpec
    callbacks: LaunchCallbacks
    stopped: threading.Event = field(default_factory=threading.Event)

    def running(self) -> bool:
        return not self.stopped.is_set()

    def stop(self, grace: float = 1.0) -> None:
        if not self.stopped.is_set():
            self.stopped.set()
            self.callbacks.on_event({"type": "stopped"})
            self.callbacks.on_exit(0, ("stopped",))

    def finish(self, metrics: Mapping[str, float]) -> None:
        self.callbacks.on_event({"type": "final", "metrics": dict(metrics)})
        self.stopped.set()
        self.callbacks.on_exit(0, ())


class FakeLauncher:
    """Records launches; each handle lets the test play the aggregator."""

    def __init__(self) -> None:
        self.launched: list[FakeHandle] = []
        self.cond = threading.Condition()

    def launch(self, spec: LaunchSpec, callbacks: LaunchCallbacks) -> FakeHandle:
        handle = FakeHandle(spec, callbacks)
        with self.cond:
            self.launched.append(handle)
            self.cond.notify_all()
        return handle

    def wait_for(self, count: int, timeout: float = 5.0) -> list[FakeHandle]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.launched) >= count, timeout), \
                f"{len(self.launched)} launches, expected {count}"
            return list(self.launched)


@pytest.fixture
def fake_launcher() -> FakeLauncher:
    return FakeLauncher()


# The envoy tests' fixture lives with its helpers; imported here so pytest finds it.
from tests.unit.director.envoy_fixtures import make_envoy  # noqa: E402, F401
