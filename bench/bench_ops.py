"""What watching an aggregator costs: a Prometheus scrape, a remote status, a health check.

    .venv/bin/python bench/bench_ops.py            # 300 calls of each

A real aggregator (`start_aggregator` on a copy of plans/numpy_digits, mutual TLS, metrics port
on) in this process, watched from this process over loopback:

- ``/metrics`` scrape (prometheus-client exposition), against ``/healthz`` on the same HTTP
  server (the floor: an HTTP round trip that renders nothing);
- ``GetStatus`` with an operator certificate, against ``grpc.health.v1`` Check on the same
  channel (the floor: the cheapest authenticated gRPC call);
- how long a ``Watch`` caller waits to hear NOT_SERVING after a graceful stop begins.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from openfl_like.app.aggregator import start_aggregator
from openfl_like.app.workspace import ensure_pki
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.plan.load import load_plan
from openfl_like.transport.credentials import TlsFiles, channel_credentials
from openfl_like.transport.operator_client import OperatorClient

ROOT = Path(__file__).resolve().parents[1]


def timed(call, count: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(median, p99) seconds of ``count`` calls."""
    call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times), times[int(0.99 * (len(times) - 1))]


def main() -> None:
    count = 300
    tmp = Path(tempfile.mkdtemp(prefix="bench-ops-"))
    try:
        plan_dir = tmp / "plan"
        shutil.copytree(ROOT / "plans" / "numpy_digits", plan_dir,
                        ignore=shutil.ignore_patterns("workspace"))
        plan = load_plan(plan_dir)
        store = PkiStore(tmp / "pki")
        ensure_pki(store, aggregator=plan.aggregator.name, collaborators=plan.collaborators)
        CertificateAuthority.load(store).certify("ops1", Role.OPERATOR)
        running = start_aggregator(plan, pki=store, workspace=tmp / "ws", port=0,
                                   metrics_port=0)
        try:
            base = f"http://127.0.0.1:{running.metrics_port}"
            size = len(urllib.request.urlopen(f"{base}/metrics").read())
            scrape = timed(lambda: urllib.request.urlopen(f"{base}/metrics").read(), count)
            alive = timed(lambda: urllib.request.urlopen(f"{base}/healthz").read(), count)
            files = TlsFiles.for_participant(store, "ops1")
            with OperatorClient(target=f"127.0.0.1:{running.port}", operator_name="ops1",
                                aggregator_name=plan.aggregator.name,
                                federation_uuid=plan.federation_uuid, tls_files=files) as ops:
                status = timed(ops.get_status, count)
            with grpc.secure_channel(f"127.0.0.1:{running.port}",
                                     channel_credentials(files)) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                check = timed(lambda: stub.Check(health_pb2.HealthCheckRequest(
                    service="openfl_like.v1.Aggregator")), count)
                watch = stub.Watch(health_pb2.HealthCheckRequest(), timeout=30)
                first = next(watch).status
                heard: list[tuple[int, float]] = []
                listener = threading.Thread(target=lambda: heard.append(
                    (next(watch).status, time.perf_counter())))
                listener.start()
                started = time.perf_counter()
                running.request_stop()  # what SIGTERM does
                running.run(timeout=30)  # the graceful stop (its grace covers open streams)
                listener.join(30)
                pushed = heard[0][1] - started
        finally:
            running.stop(0)
        ms = 1000.0
        print(f"/metrics scrape: {size} bytes, median {scrape[0] * ms:.2f} ms, p99 "
              f"{scrape[1] * ms:.2f} ms = {scrape[0] / alive[0]:.1f}x an empty HTTP round trip "
              f"(/healthz {alive[0] * ms:.2f} ms)")
        print(f"GetStatus (operator, mTLS): median {status[0] * ms:.2f} ms, p99 "
              f"{status[1] * ms:.2f} ms = {status[0] / check[0]:.1f}x a health Check "
              f"({check[0] * ms:.2f} ms, p99 {check[1] * ms:.2f} ms)")
        print(f"Watch: {health_pb2.HealthCheckResponse.ServingStatus.Name(first)} -> "
              f"{health_pb2.HealthCheckResponse.ServingStatus.Name(heard[0][0])} heard "
              f"{pushed * ms:.1f} ms after the stop was requested")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
