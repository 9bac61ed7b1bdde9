"""The envoy tests' fixture: an envoy running in a thread against a FakeDirector."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from openfl_like.director.envoy import Envoy
from openfl_like.plan.envoy_config import EnvoyConfig
from tests.unit.director.envoy_fakes import FAKE_COLLABORATOR, FakeDirector, fake_command


@dataclass
class RunningTestEnvoy:
    envoy: Envoy
    director: FakeDirector
    config: EnvoyConfig
    stop_event: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> RunningTestEnvoy:
        def target() -> None:
            try:
                self.envoy.run(self.stop_event)
            except BaseException as exc:
                self.errors.append(exc)

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)
            assert not self.thread.is_alive(), "the envoy did not stop"

    def pid_of(self, experiment: str) -> int | None:
        path = self.config.experiment_dir(experiment) / "work" / "pid"
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return None


class EnvoyFactory(Protocol):
    def __call__(self, config: EnvoyConfig, director: FakeDirector | None = None,
                 **kwargs: Any) -> RunningTestEnvoy: ...


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


@pytest.fixture
def make_envoy(tmp_path: Path) -> Iterator[EnvoyFactory]:
    script = tmp_path / "fake_collaborator.py"
    script.write_text(FAKE_COLLABORATOR)
    started: list[RunningTestEnvoy] = []

    def factory(config: EnvoyConfig, director: FakeDirector | None = None,
                **kwargs: Any) -> RunningTestEnvoy:
        director = director or FakeDirector()
        options: dict[str, Any] = {"poll_seconds": 0.2, "grace_seconds": 2.0}
        options.update(kwargs)
        envoy = Envoy("site1", config, director, pki_dir=tmp_path / "pki",
                      collaborator_command=fake_command(script), **options)
        running = RunningTestEnvoy(envoy, director, config)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.stop_event.set()
        if running.thread is not None:
            running.thread.join(20)
    # No child may outlive its envoy; kill any (and fail) so nothing leaks between tests.
    leftovers = []
    for pid_file in tmp_path.rglob("work/pid"):
        pid = int(pid_file.read_text())
        if alive(pid):
            leftovers.append(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not leftovers, f"collaborator processes left running: {leftovers}"
