"""The example Prometheus files of plans/ops pass promtool, and name metrics that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from openfl_like.transport.metrics import AggregatorMetrics, CollaboratorMetrics

OPS = Path(__file__).resolve().parents[3] / "plans" / "ops"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool not installed (apt-get install prometheus)")


@needs_promtool
def test_alert_rules_pass_promtool():
    checked = subprocess.run(["promtool", "check", "rules", str(OPS / "alerts.yml")],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


@needs_promtool
def test_scrape_config_passes_promtool():
    checked = subprocess.run(["promtool", "check", "config", str(OPS / "prometheus.yml")],
                             capture_output=True, text=True, timeout=30, cwd=OPS)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alert_rules_name_only_metrics_we_export():
    # Prepare: every metric family both roles export (status gauges included)
    metrics = AggregatorMetrics()
    metrics.watch_status(lambda: {"last_round": None})
    exported = generate_latest(metrics.registry).decode()
    exported += generate_latest(CollaboratorMetrics().registry).decode()
    names = set(re.findall(r"^# TYPE (\S+) ", exported, re.MULTILINE))
    names |= {n + "_total" for n in names}

    # Execute
    used = set(re.findall(r"\b(openfl_[a-z_]+)", (OPS / "alerts.yml").read_text()))

    # Assert
    assert used, "no metric named in alerts.yml"
    assert used <= names, used - names
