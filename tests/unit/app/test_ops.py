"""The ops side of the composition roots: which port, readiness of a real aggregator, timing."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from openfl_like.app.aggregator import start_aggregator
from openfl_like.app.ops import TimedRunner, metrics_port_of
from openfl_like.pki import PkiStore
from openfl_like.plan.load import load_plan
from openfl_like.transport.settings import TransportSettings


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_port_comes_from_the_argument_else_the_settings():
    assert metrics_port_of(TransportSettings(), None) is None  # off by default
    assert metrics_port_of(TransportSettings(metrics_port=9464), None) == 9464
    assert metrics_port_of(TransportSettings(metrics_port=9464), 0) == 0  # 0: a free one
    assert metrics_port_of(TransportSettings(), 9500) == 9500


def test_timed_runner_notes_each_task_duration():
    class Runner:
        def train(self, *, epochs: int, batch_size: int) -> str:
            return "trained"

        def validate(self, *, batch_size: int) -> str:
            raise RuntimeError("bad data")

    ticks = iter([10.0, 12.5, 20.0, 20.25])
    timed = TimedRunner(Runner(), clock=lambda: next(ticks))  # type: ignore[arg-type]
    assert timed.train(epochs=1, batch_size=2) == "trained" and timed.last_seconds == 2.5
    with pytest.raises(RuntimeError):
        timed.validate(batch_size=2)
    assert timed.last_seconds == 0.25


@pytest.mark.timeout(60)
def test_a_running_aggregator_serves_metrics_and_readiness(tmp_path: Path):
    # Prepare: a plan without TLS (no PKI needed) and a noop runner
    plan_dir = tmp_path / "plan"
    plan_dir.mkdir()
    (plan_dir / "plan.yaml").write_text(yaml.safe_dump({
        "task_runner": {"name": "noop"}, "aggregator": {"rounds_to_train": 3, "port": 0},
        "network": {"tls": False}}))
    (plan_dir / "cols.yaml").write_text("collaborators: [col1, col2]\n")
    (plan_dir / "data.yaml").write_text("col1: 0\ncol2: 1\n")
    plan = load_plan(plan_dir)

    # Execute
    running = start_aggregator(plan, pki=PkiStore(tmp_path / "pki"),
                               workspace=tmp_path / "ws", port=0, metrics_port=0)
    try:
        assert running.metrics_port is not None
        base = f"http://127.0.0.1:{running.metrics_port}"
        ready = get(base + "/readyz")
        code, text = get(base + "/metrics")
        running.stop_requested.set()
        stopping = get(base + "/readyz")
        alive = get(base + "/healthz")
    finally:
        running.stop()

    # Assert
    assert ready == (200, "ready\n")
    assert code == 200
    assert "openfl_aggregator_round 0.0" in text
    assert "openfl_aggregator_rounds_to_train 3.0" in text
    assert "openfl_aggregator_collaborators 2.0" in text
    assert "openfl_aggregator_ready 1.0" in text
    assert stopping == (503, "not ready\n") and alive == (200, "ok\n")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(base + "/healthz", timeout=2)  # closed with the aggregator
