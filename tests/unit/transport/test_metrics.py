"""Metric names, types and labels (Prometheus conventions), and the ops HTTP port."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from openfl_like.core.errors import ConfigError
from openfl_like.transport.http_ops import OpsServer, is_loopback
from openfl_like.transport.metrics import (
    AggregatorMetrics,
    CollaboratorMetrics,
    directory_bytes,
    new_registry,
    os_threads,
)
from openfl_like.transport.settings import TransportSettings

NAME = re.compile(r"^(openfl_(aggregator|collaborator)_|process_)[a-z_]+$")
BOUNDED_LABELS = {"method", "code", "check", "reason", "direction", "task", "metric", "le"}


def status(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "round": 3, "rounds_to_train": 5, "phase": "training", "failed": "",
        "disk_problem": "", "round_age_seconds": 1.5, "results_in": 1,
        "waiting_for": ["col2"], "dropped": {"col3": "silent"},
        "collaborators": {"col1": {"active": True}, "col2": {"active": True},
                          "col3": {"active": False}},
        "last_round": {"round": 2, "closed_by": "complete",
                       "metrics": {"aggregated_model_validation": {"accuracy": 0.75,
                                                                   "loss": 0.5}}},
    }
    base.update(over)
    return base


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() for s in family.samples}


def exercised_aggregator(tmp_path: Path) -> AggregatorMetrics:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "a.bin").write_bytes(b"x" * 1000)
    (staging / "b.bin").write_bytes(b"y" * 24)
    metrics = AggregatorMetrics()
    metrics.watch_status(lambda: status(), staging_dir=staging, round_deadline_seconds=60)
    metrics.set_ready_check(lambda: True)
    metrics.received(100)
    metrics.sent(40)
    metrics.refused("Heartbeat", "PERMISSION_DENIED", "not_authorised")
    metrics.result("accepted")
    metrics.result("duplicate")
    metrics.result("refused", "not_counted")
    metrics.transfer("upload", 10_000_000, 0.5)
    metrics.polls_parked(+1)
    metrics.round_closed({"closed_by": "deadline", "duration_seconds": 12.5})
    return metrics


def test_aggregator_metrics_names_values_and_labels(tmp_path):
    # Prepare / Execute
    metrics = exercised_aggregator(tmp_path)
    got = samples(metrics.registry)

    # Assert: the figures an operator reads
    p = "openfl_aggregator_"
    assert got[(p + "round", ())] == 3
    assert got[(p + "rounds_to_train", ())] == 5
    assert got[(p + "collaborators_active", ())] == 2
    assert got[(p + "collaborators_awaited", ())] == 1
    assert got[(p + "collaborators_dropped", ())] == 1
    assert got[(p + "round_deadline_seconds", ())] == 60
    assert got[(p + "staging_bytes", ())] == 1024
    assert got[(p + "aggregated_metric", (("metric", "accuracy"),
                                          ("task", "aggregated_model_validation")))] == 0.75
    assert got[(p + "aggregated_metric_round", ())] == 2
    assert got[(p + "received_bytes_total", ())] == 100
    assert got[(p + "sent_bytes_total", ())] == 40
    assert got[(p + "calls_refused_total", (("check", "not_authorised"),
                                            ("code", "PERMISSION_DENIED"),
                                            ("method", "Heartbeat")))] == 1
    assert got[(p + "results_accepted_total", ())] == 1
    assert got[(p + "results_duplicate_total", ())] == 1
    assert got[(p + "results_refused_total", (("reason", "not_counted"),))] == 1
    assert got[(p + "transfer_throughput_bytes_per_second_sum",
                (("direction", "upload"),))] == 20_000_000
    assert got[(p + "parked_polls", ())] == 1
    assert got[(p + "rounds_closed_total", (("reason", "deadline"),))] == 1
    assert got[(p + "rounds_closed_total", (("reason", "complete"),))] == 0  # present at 0
    assert got[(p + "round_duration_seconds_sum", ())] == 12.5
    assert got[(p + "ready", ())] == 1
    assert got[("process_resident_memory_bytes", ())] > 0
    assert got[("process_threads", ())] >= 1
    # Conventions: prefixes, counters end in _total, only bounded label names
    for name, labels in got:
        assert NAME.match(name), name
        assert {k for k, _ in labels} <= BOUNDED_LABELS, (name, labels)
    for family in metrics.registry.collect():
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)


def test_collaborator_metrics_names_values_and_labels():
    # Prepare
    metrics = CollaboratorMetrics()

    # Execute
    metrics.sent(500)
    metrics.received(70)
    metrics.retry("UNAVAILABLE")
    metrics.retry("UNAVAILABLE")
    metrics.reconnect()
    metrics.task_done(4, "train", 0.3)
    got = samples(metrics.registry)

    # Assert
    p = "openfl_collaborator_"
    assert got[(p + "sent_bytes_total", ())] == 500
    assert got[(p + "received_bytes_total", ())] == 70
    assert got[(p + "retries_total", (("code", "UNAVAILABLE"),))] == 2
    assert got[(p + "reconnects_total", ())] == 1
    assert got[(p + "task_duration_seconds_count", (("task", "train"),))] == 1
    assert got[(p + "round", ())] == 4
    for name, labels in got:
        assert NAME.match(name), name
        assert {k for k, _ in labels} <= BOUNDED_LABELS, (name, labels)


def test_a_failing_status_does_not_fail_the_scrape(caplog):
    # Prepare
    metrics = AggregatorMetrics()

    def broken() -> dict[str, Any]:
        raise RuntimeError("boom")

    metrics.watch_status(broken)

    # Execute
    with caplog.at_level(logging.ERROR):
        text = generate_latest(metrics.registry).decode()

    # Assert
    assert "openfl_aggregator_received_bytes_total" in text
    assert "openfl_aggregator_round " not in text
    assert metrics.is_ready() is False  # no check set: not ready


def test_each_registry_is_its_own():
    first, second = AggregatorMetrics(), AggregatorMetrics()
    first.received(5)
    assert second.registry.get_sample_value("openfl_aggregator_received_bytes_total") == 0


def test_small_helpers(tmp_path):
    assert directory_bytes(tmp_path / "missing") == 0
    assert os_threads() >= 1
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool missing (apt-get install prometheus)")
@pytest.mark.parametrize("role", ["aggregator", "collaborator"])
def test_promtool_accepts_the_exposition(tmp_path, role):
    # Prepare
    registry = (exercised_aggregator(tmp_path) if role == "aggregator"
                else CollaboratorMetrics()).registry

    # Execute
    checked = subprocess.run(["promtool", "check", "metrics"],
                             input=generate_latest(registry), capture_output=True, timeout=30)

    # Assert: no error and no lint remark
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not checked.stdout.strip() and not checked.stderr.strip(), checked


# ------------------------------------------------------------------------------- ops HTTP port
def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_ops_port_serves_metrics_health_and_readiness():
    # Prepare
    registry = new_registry()
    ready = [False]
    server = OpsServer(registry, ready=lambda: ready[0])
    try:
        # Execute / Assert
        assert server.host == "127.0.0.1" and server.port > 0
        code, body = get(server.url + "/metrics")
        assert code == 200 and "process_threads" in body
        assert get(server.url + "/healthz") == (200, "ok\n")
        assert get(server.url + "/readyz") == (503, "not ready\n")
        ready[0] = True
        assert get(server.url + "/readyz") == (200, "ready\n")
        assert get(server.url + "/nothing")[0] == 404
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url + "/healthz", timeout=2)


def test_a_raising_readiness_check_is_not_ready(caplog):
    def broken() -> bool:
        raise RuntimeError("boom")

    server = OpsServer(new_registry(), ready=broken)
    try:
        with caplog.at_level(logging.ERROR):
            assert get(server.url + "/readyz")[0] == 503
    finally:
        server.stop()


def test_another_address_is_a_warning_and_a_taken_port_a_config_error(caplog):
    # Prepare
    with caplog.at_level(logging.INFO):
        first = OpsServer(new_registry(), ready=lambda: True, host="0.0.0.0")
    try:
        # Assert
        assert any(r.levelno == logging.WARNING and "UNAUTHENTICATED" in r.getMessage()
                   for r in caplog.records)
        with pytest.raises(ConfigError, match="metrics port"):
            OpsServer(new_registry(), ready=lambda: True, port=first.port)
    finally:
        first.stop()


def test_settings_metrics_port_from_plan_keys_and_environment():
    from openfl_like.app.settings import transport_mapping

    settings = TransportSettings.from_mapping(
        transport_mapping({"metrics_port": 9464, "metrics_host": "0.0.0.0"}), env={})
    assert (settings.metrics_port, settings.metrics_host) == (9464, "0.0.0.0")
    assert TransportSettings.from_mapping({}, env={}).metrics_port == 0  # off by default
    env = TransportSettings.from_mapping({}, env={"FX_METRICS_PORT": "9100"})
    assert env.metrics_port == 9100 and env.metrics_host == "127.0.0.1"
    with pytest.raises(ConfigError, match="metrics_port"):
        TransportSettings(metrics_port=70000)
