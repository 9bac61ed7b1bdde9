"""Metrics and health of a running federation, scraped directly and by a real Prometheus.

One federation (numpy, 3 collaborators, `fx` processes) is brought to a standstill it keeps for
a while: col3 is killed once rounds are running, so the round waits for it (deadline and
liveness far away) while col1 and col2 sit in long-polls. Its figures then hold still, and what
/metrics says (directly, and through Prometheus' HTTP API after a few scrapes) must equal the
federation's own status file and the other side's counters.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openfl_like.core.errors import PermissionDeniedError
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.settings import TransportSettings

from .conftest import (
    LISTENING,
    OUTSIDER,
    FxProcess,
    ProcessRegistry,
    copy_plan,
    free_port,
    make_pki,
)

pytestmark = pytest.mark.e2e

OPS_DIR = Path(__file__).resolve().parents[2] / "plans" / "ops"
COLS = ("col1", "col2", "col3")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
NEED_PROMETHEUS = "prometheus not installed (apt-get install prometheus)"


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def parse_exposition(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of each sample line (labels as printed, sorted by the library)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return out


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
               ) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(interval)  # polling a server we do not control: no event to wait on
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


@dataclass
class StalledFederation:
    plan_dir: Path
    workspace: Path
    aggregator: FxProcess
    metrics_ports: dict[str, int]  # "aggregator", "col1", ...

    def scrape(self, who: str = "aggregator") -> dict[str, float]:
        code, text = http_get(f"http://127.0.0.1:{self.metrics_ports[who]}/metrics")
        assert code == 200, text
        return parse_exposition(text)

    def exposition(self, who: str) -> str:
        return http_get(f"http://127.0.0.1:{self.metrics_ports[who]}/metrics")[1]

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.workspace / "status.json").read_text())
        return data


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StalledFederation]:
    tmp = tmp_path_factory.mktemp("ops")
    pki = make_pki(tmp / "pki")
    plan_dir = copy_plan("numpy_digits", tmp / "plan", {
        "aggregator.rounds_to_train": 1000,
        "aggregator.write_tensorboard": False,
        "aggregator.write_plot": False,
        "collaborator.epochs": 1,
        "stragglers.round_deadline_seconds": 300,
        "stragglers.liveness_timeout_seconds": 300,
        "network.long_poll_seconds": 120,  # parked polls: no traffic while we look
    }, collaborators=COLS)
    workspace = tmp / "workspace"
    ports = {name: free_port() for name in ("aggregator", *COLS)}
    procs = ProcessRegistry()
    try:
        aggregator = procs.start(
            "aggregator", "start", "-p", plan_dir, "--pki-dir", pki.root, "--workspace",
            workspace, "--port", "0", "--metrics-port", str(ports["aggregator"]),
            name="aggregator", cwd=plan_dir)
        grpc_port = int(aggregator.stderr.wait_for(LISTENING, 60).group(1))
        for name in COLS:
            procs.start("collaborator", "start", "-n", name, "-p", plan_dir, "--pki-dir",
                        pki.root, "--aggregator", f"127.0.0.1:{grpc_port}",
                        "--metrics-port", str(ports[name]), name=name, cwd=plan_dir)
        fed = StalledFederation(plan_dir, workspace, aggregator, ports)
        wait_until(lambda: fed.scrape().get("openfl_aggregator_round", 0) >= 2, 60,
                   "round 2")
        victim = next(p for p in procs.processes if p.name == "col3")
        victim.kill9()
        # status.json is refreshed every 0.5 s by the aggregator's main thread (which may still
        # be busy starting up while the first rounds close): wait until it has caught up too
        wait_until(lambda: (s := fed.status())["waiting_for"] == ["col3"]
                   and s["results_in"] >= 2 and s["round"] >= 2, 30,
                   "a round >= 2 that waits only for col3, in status.json")
        # A refused call: col9 has a certificate of our CA but is not in cols.yaml (`fx
        # collaborator start` would refuse it before dialling, so the library calls).
        outsider = AggregatorGRPCClient(
            host="127.0.0.1", port=grpc_port, collaborator_name=OUTSIDER,
            aggregator_name="aggregator", federation_uuid=fed.status()["federation_uuid"],
            tls_files=TlsFiles.for_participant(pki, OUTSIDER), settings=TransportSettings())
        with outsider, pytest.raises(PermissionDeniedError):
            outsider.heartbeat()
        yield fed
    finally:
        procs.kill_all()
        if any(p.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM)
               for p in procs.processes):
            print(procs.report())


def test_metrics_and_health_of_a_running_federation(federation):
    # Prepare
    fed = federation

    # Execute
    status = fed.status()
    agg = fed.scrape()
    cols = {name: fed.scrape(name) for name in ("col1", "col2")}

    # Assert: the round and the awaited collaborator as the status file has them
    assert agg["openfl_aggregator_round"] == status["round"] >= 2
    assert agg["openfl_aggregator_collaborators_awaited"] == 1
    assert agg["openfl_aggregator_results_in_round"] == status["results_in"]
    assert agg["openfl_aggregator_parked_polls"] == 2  # col1 and col2 wait for work
    # every result of the closed rounds was accepted; bytes moved both ways
    assert agg["openfl_aggregator_results_accepted_total"] >= 3 * status["round"]
    assert agg["openfl_aggregator_received_bytes_total"] > 0
    assert agg["openfl_aggregator_sent_bytes_total"] > 0
    assert agg['openfl_aggregator_rounds_closed_total{reason="complete"}'] == status["round"]
    last = status["last_round"]
    accuracy = last["metrics"]["aggregated_model_validation"]["accuracy"]
    assert agg["openfl_aggregator_aggregated_metric_round"] == last["round"]
    assert agg['openfl_aggregator_aggregated_metric{metric="accuracy",'
               'task="aggregated_model_validation"}'] == pytest.approx(accuracy)
    # the outsider's refusal, counted by status code and check
    assert agg['openfl_aggregator_calls_refused_total{check="not_authorised",'
               'code="PERMISSION_DENIED",method="Heartbeat"}'] == 1
    # collaborators: tasks timed, bytes moved, the round they worked on
    for name, col in cols.items():
        assert col["openfl_collaborator_round"] == status["round"], name
        assert col['openfl_collaborator_task_duration_seconds_count{task="train"}'] \
            >= status["round"], name
        assert col["openfl_collaborator_sent_bytes_total"] > 0, name
    # what col1 and col2 sent arrived (col3 sent too, before it was killed)
    sent = sum(c["openfl_collaborator_sent_bytes_total"] for c in cols.values())
    assert agg["openfl_aggregator_received_bytes_total"] > sent
    assert agg["process_resident_memory_bytes"] > 0 and agg["process_threads"] > 1
    # health: alive and ready (the round is open and served)
    assert http_get(f"http://127.0.0.1:{fed.metrics_ports['aggregator']}/healthz")[0] == 200
    assert http_get(f"http://127.0.0.1:{fed.metrics_ports['aggregator']}/readyz")[0] == 200
    assert http_get(f"http://127.0.0.1:{fed.metrics_ports['col1']}/readyz")[0] == 200


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (apt-get install prometheus)")
@pytest.mark.parametrize("who", ["aggregator", "col1"])
def test_promtool_checks_the_live_exposition(federation, who, tmp_path):
    checked = subprocess.run(["promtool", "check", "metrics"],
                             input=federation.exposition(who).encode(), capture_output=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not (checked.stdout + checked.stderr).strip(), checked


# ------------------------------------------------------------------------------ real Prometheus
def prometheus_config(fed: StalledFederation) -> str:
    cols = ", ".join(f'"127.0.0.1:{fed.metrics_ports[c]}"' for c in COLS)
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: [\"{OPS_DIR / 'alerts.yml'}\"]\n"
        "scrape_configs:\n"
        "  - job_name: openfl-aggregator\n    static_configs:\n"
        f"      - targets: [\"127.0.0.1:{fed.metrics_ports['aggregator']}\"]\n"
        "  - job_name: openfl-collaborators\n    static_configs:\n"
        f"      - targets: [{cols}]\n"
    )


def query(base: str, expr: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    code, body = http_get(url)
    assert code == 200, body
    data = json.loads(body)
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def scalar(base: str, expr: str) -> float | None:
    result = query(base, expr)
    return float(result[0]["value"][1]) if len(result) == 1 else None


@pytest.fixture
def prometheus(federation, tmp_path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(NEED_PROMETHEUS)
    config = tmp_path / "prometheus.yml"
    config.write_text(prometheus_config(federation))
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: process.poll() is not None or _ready(base), 30, "prometheus ready")
        assert process.poll() is None, process.communicate(timeout=5)[0].decode()
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()


def _ready(base: str) -> bool:
    try:
        return http_get(base + "/-/ready", timeout=1)[0] == 200
    except (OSError, urllib.error.URLError):
        return False


@pytest.mark.timeout(90)
def test_a_real_prometheus_scrapes_the_federation(federation, prometheus):
    # Prepare
    fed, base = federation, prometheus

    # Execute: a few scrapes of every target
    wait_until(lambda: (scalar(base, 'count_over_time(up{job="openfl-aggregator"}[1m])')
                        or 0) >= 3, 30, "three scrapes of the aggregator")
    wait_until(lambda: len(query(base, 'up{job="openfl-collaborators"}')) == 3, 15,
               "a scrape of each collaborator")

    # Assert: the targets' health as Prometheus sees it (col3 was killed)
    ups = {r["metric"]["instance"]: r["value"][1]
           for r in query(base, 'up{job="openfl-collaborators"}')}
    assert ups == {f"127.0.0.1:{fed.metrics_ports['col1']}": "1",
                   f"127.0.0.1:{fed.metrics_ports['col2']}": "1",
                   f"127.0.0.1:{fed.metrics_ports['col3']}": "0"}
    assert scalar(base, 'up{job="openfl-aggregator"}') == 1
    # the round and the bytes, as queried from Prometheus, equal the federation's own figures
    status, direct = fed.status(), fed.scrape()
    assert scalar(base, "openfl_aggregator_round") == status["round"] >= 2
    assert scalar(base, "openfl_aggregator_received_bytes_total") == \
        direct["openfl_aggregator_received_bytes_total"] > 0
    for name in ("col1", "col2"):
        instance = f"127.0.0.1:{fed.metrics_ports[name]}"
        assert scalar(base, f'openfl_collaborator_sent_bytes_total{{instance="{instance}"}}') \
            == fed.scrape(name)["openfl_collaborator_sent_bytes_total"] > 0
        assert scalar(base, f'openfl_collaborator_round{{instance="{instance}"}}') \
            == status["round"]
    assert scalar(base, 'sum(openfl_aggregator_calls_refused_total{check="not_authorised"})') \
        >= 1
    # the example alert rules load and evaluate: only the killed collaborator's is pending
    wait_until(lambda: _rules_evaluated(base), 15, "the example rules evaluated")
    alerts = {a["labels"]["alertname"] for a in json.loads(
        http_get(base + "/api/v1/alerts")[1])["data"]["alerts"]}
    assert alerts <= {"OpenflCollaboratorDown", "OpenflRefusalsRising"}, alerts


def _rules_evaluated(base: str) -> bool:
    groups = json.loads(http_get(base + "/api/v1/rules")[1])["data"]["groups"]
    return bool(groups) and all(rule.get("lastEvaluation", "").startswith("20")
                                for group in groups for rule in group["rules"])
