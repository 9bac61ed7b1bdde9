"""The director's and the envoy's metrics: names, types, bounded labels, promtool, and the
envoy's observed port and retry policy."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from openfl_like.app.ops import ObservedEnvoyPort, children_env
from openfl_like.core.errors import NotFoundError, UnavailableError
from openfl_like.core.experiments import EnvoyAssignment, EventKind, FailureCode, FeedbackItem
from openfl_like.transport.director_metrics import (
    EXPERIMENT_STATES,
    DirectorMetrics,
    DirectorSnapshot,
    EnvoyMetrics,
    ObservedRetryPolicy,
    status_code_name,
)
from openfl_like.transport.observers import ACCEPTED, REFUSED, ServerObserver

NAME = re.compile(r"^(openfl_(director|envoy)_|process_)[a-z_]+$")
BOUNDED_LABELS = {"method", "code", "check", "reason", "state"}


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples}


def snapshot() -> DirectorSnapshot:
    return DirectorSnapshot(experiments={"running": 2, "queued": 1, "finished": 4},
                            envoys_registered=3, envoys_online=2, stream_followers=5,
                            events_stored=1234, broadcasts_pending=1)


def exercised_director() -> DirectorMetrics:
    metrics = DirectorMetrics()
    metrics.watch(snapshot)
    metrics.set_ready_check(lambda: True)
    metrics.received(100)
    metrics.sent(40)
    metrics.refused("GetEnvoys", "PERMISSION_DENIED", "role")
    metrics.result(ACCEPTED)
    metrics.result(REFUSED, "refused")
    metrics.result(REFUSED, "limit_exceeded")
    metrics.polls_parked(+1)
    metrics.polls_parked(+1)
    metrics.polls_parked(-1)
    return metrics


def test_director_metrics_names_values_and_labels():
    # Prepare / Execute
    metrics = exercised_director()
    got = samples(metrics.registry)

    # Assert
    p = "openfl_director_"
    assert got[(p + "experiments", (("state", "running"),))] == 2
    assert got[(p + "experiments", (("state", "cancelled"),))] == 0  # every state, at 0 too
    states = {dict(labels)["state"] for (name, labels) in got if name == p + "experiments"}
    assert states == set(EXPERIMENT_STATES)
    assert got[(p + "envoys_registered", ())] == 3
    assert got[(p + "envoys_online", ())] == 2
    assert got[(p + "metric_stream_followers", ())] == 5
    assert got[(p + "events_stored", ())] == 1234
    assert got[(p + "broadcasts_pending", ())] == 1
    assert got[(p + "parked_polls", ())] == 1
    assert got[(p + "received_bytes_total", ())] == 100
    assert got[(p + "sent_bytes_total", ())] == 40
    assert got[(p + "experiments_submitted_total", ())] == 1
    assert got[(p + "experiments_refused_total", (("reason", "refused"),))] == 1
    assert got[(p + "experiments_refused_total", (("reason", "limit_exceeded"),))] == 1
    assert got[(p + "calls_refused_total", (("check", "role"), ("code", "PERMISSION_DENIED"),
                                             ("method", "GetEnvoys")))] == 1
    assert got[(p + "ready", ())] == 1
    assert got[("process_threads", ())] >= 1
    assert ("process_resident_memory_bytes", ()) in got
    for name, labels in got:
        assert NAME.match(name), name
        assert {key for key, _ in labels} <= BOUNDED_LABELS | {"le"}, (name, labels)


def test_director_metrics_is_a_server_observer():
    observer: ServerObserver = DirectorMetrics()  # mypy checks the Protocol; this the call
    observer.transfer("upload", 10, 0.1)  # accepted and ignored


def test_a_failing_snapshot_leaves_the_other_metrics():
    # Prepare
    metrics = DirectorMetrics()

    def broken() -> DirectorSnapshot:
        raise RuntimeError("the registry is closed")

    metrics.watch(broken)
    metrics.received(5)

    # Execute
    text = generate_latest(metrics.registry).decode()

    # Assert
    assert "openfl_director_received_bytes_total 5.0" in text
    assert "openfl_director_envoys_registered" not in text
    assert "openfl_director_ready 0.0" in text  # no ready check yet


class FakeEnvoy:
    def __init__(self) -> None:
        self.registered = True

    def status(self) -> dict[str, Any]:
        return {"registered": self.registered, "running": ["e1", "e2"],
                "awaiting_approval": ["e3"]}

    def tally(self) -> dict[str, int]:
        return {"finished": 4, "feedback_dropped": 7}


def exercised_envoy() -> EnvoyMetrics:
    envoy = FakeEnvoy()
    metrics = EnvoyMetrics()
    metrics.watch(envoy.status, envoy.tally)
    metrics.set_ready_check(lambda: envoy.registered)
    metrics.director_call(True)
    metrics.experiment_failed(rejected=False)
    metrics.experiment_failed(rejected=True)
    metrics.experiment_failed(rejected=True)
    metrics.feedback_sent(12)
    metrics.retry("UNAVAILABLE")
    return metrics


def test_envoy_metrics_names_values_and_labels():
    # Prepare / Execute
    got = samples(exercised_envoy().registry)

    # Assert
    p = "openfl_envoy_"
    assert got[(p + "registered", ())] == 1
    assert got[(p + "director_reachable", ())] == 1
    assert got[(p + "experiments_running", ())] == 2
    assert got[(p + "experiments_awaiting_approval", ())] == 1
    assert got[(p + "experiments_finished_total", ())] == 4
    assert got[(p + "experiments_failed_total", ())] == 1
    assert got[(p + "experiments_rejected_total", ())] == 2
    assert got[(p + "feedback_items_sent_total", ())] == 12
    assert got[(p + "feedback_items_dropped_total", ())] == 7
    assert got[(p + "retries_total", (("code", "UNAVAILABLE"),))] == 1
    assert got[(p + "ready", ())] == 1
    for name, labels in got:
        assert NAME.match(name), name
        assert {key for key, _ in labels} <= BOUNDED_LABELS | {"le"}, (name, labels)


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool missing (apt-get install prometheus)")
@pytest.mark.parametrize("role", ["director", "envoy"])
def test_promtool_accepts_the_exposition(role):
    # Prepare
    registry = (exercised_director() if role == "director" else exercised_envoy()).registry

    # Execute
    checked = subprocess.run(["promtool", "check", "metrics"],
                             input=generate_latest(registry), capture_output=True, timeout=30)

    # Assert: no error and no lint remark
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not checked.stdout.strip() and not checked.stderr.strip(), checked


# ------------------------------------------------------------------------ the envoy's port
class FakePort:
    def __init__(self) -> None:
        self.held = 10
        self.fail: BaseException | None = None

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail

    def update_shard_info(self, shard: Any) -> str:
        self._maybe_fail()
        return "registered"

    def update_envoy_status(self, running: Sequence[str], awaiting: Sequence[str]) -> float:
        self._maybe_fail()
        return 5.0

    def wait_experiment(self, wait_seconds: float) -> EnvoyAssignment:
        self._maybe_fail()
        return EnvoyAssignment()

    def get_experiment_data(self, experiment: str, dest: Any, *, max_bytes: int) -> list[Any]:
        return []

    def set_experiment_failed(self, experiment: str, code: int, description: str,
                              last_log_lines: Sequence[str]) -> None:
        self._maybe_fail()

    def send_feedback(self, experiment: str, items: Sequence[FeedbackItem]) -> int:
        self._maybe_fail()
        self.held += len(items)
        return self.held

    def close(self) -> str:
        return "closed"


def item(seq: int) -> FeedbackItem:
    return FeedbackItem(seq=seq, time=0.0, kind=EventKind.LOG, text="x")


def test_observed_port_reachability_failures_and_feedback():
    # Prepare
    metrics, inner = EnvoyMetrics(), FakePort()
    port = ObservedEnvoyPort(inner, metrics)
    p = "openfl_envoy_"

    # Execute / Assert: an answer, then no answer, then a refusal (an answer too)
    port.update_envoy_status([], [])
    assert samples(metrics.registry)[(p + "director_reachable", ())] == 1
    inner.fail = UnavailableError("director down")
    with pytest.raises(UnavailableError):
        port.wait_experiment(1.0)
    assert samples(metrics.registry)[(p + "director_reachable", ())] == 0
    inner.fail = NotFoundError("not registered")
    with pytest.raises(NotFoundError):
        port.update_envoy_status([], [])
    assert samples(metrics.registry)[(p + "director_reachable", ())] == 1
    inner.fail = None

    # failures by kind, counted even when the report itself is refused
    port.set_experiment_failed("e1", FailureCode.REJECTED, "no", [])
    port.set_experiment_failed("e1", 3, "exit 3", [])
    # feedback: the first (empty) call learns what the director holds; then the rise counts
    assert port.send_feedback("e1", []) == 10
    port.send_feedback("e1", [item(11), item(12), item(13)])
    port.send_feedback("e1", [item(14)])
    got = samples(metrics.registry)
    assert got[(p + "experiments_rejected_total", ())] == 1
    assert got[(p + "experiments_failed_total", ())] == 1
    assert got[(p + "feedback_items_sent_total", ())] == 4
    assert port.close() == "closed"  # the rest of the client passes through


def test_observed_retry_policy_counts_retries_by_code():
    # Prepare
    codes: list[str] = []
    policy = ObservedRetryPolicy(initial_backoff=0.0, max_backoff=0.0, total_seconds=5.0,
                                 sleep=lambda s: None, observe=codes.append)
    attempts = iter([UnavailableError("a"), UnavailableError("b"), None])

    def operation() -> str:
        error = next(attempts)
        if error is not None:
            raise error
        return "ok"

    # Execute
    result = policy.call(operation, is_retryable=lambda e: True)

    # Assert
    assert result == "ok"
    assert codes == ["unavailable", "unavailable"]  # the error class's code (not an RpcError)


def test_status_code_name_of_an_rpc_error():
    class Status:
        name = "DEADLINE_EXCEEDED"

    class FakeRpcError(Exception):
        def code(self) -> Status:
            return Status()

    assert status_code_name(FakeRpcError()) == "DEADLINE_EXCEEDED"


def test_children_do_not_inherit_the_metrics_port():
    assert children_env({"PATH": "/bin"}) is None
    assert children_env({"PATH": "/bin", "FX_METRICS_PORT": "9500",
                         "FX_METRICS_HOST": "0.0.0.0"}) == {"PATH": "/bin"}
