"""Director latencies: submission to the first round starting, and a round's metrics from the
aggregator to the experimenter's stream.

    .venv/bin/python bench/bench_director_latency.py              # 3 experiments, 10 rounds each
    .venv/bin/python bench/bench_director_latency.py --experiments 5 --rounds 20

Real processes over mutual TLS with certificates from our PKI (in a temp dir): `fx director
start`, two `fx envoy start` on digits shards, and this process as the experimenter (the Python
API). Each experiment (numpy softmax regression, so training costs milliseconds) is submitted
and followed on the metric stream. Per experiment:

- accepted: submit() returned (package streamed, checked, queued);
- dispatched: the director's "starting" status (port taken, plan folder written, aggregator
  process launched, the chosen envoys' long-polls woken);
- aggregator up: the director's "running" status (its aggregator process listens);
- first task: the first envoy task result of round 0 (each envoy started its collaborator
  process, which joined and trained): the first round has started;
- metric latency: for each round's aggregated metrics, the time from the aggregator closing the
  round (its own clock, in the event) to this process reading the event off the stream.

This machine's own limits, measured in the same run: starting a Python process that imports
what `fx aggregator start` imports (the floor under "aggregator up"), the same for
`fx collaborator start`, and the round trip of an empty director call (GetEnvoys) over the
already open channel (the floor under metric latency). The field's reference implementation
polls for new experiments every 10 s, so its submission-to-start is 0-10 s plus start-up.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from openfl_like.app.experimenter import Experimenter
from openfl_like.app.workspace import ensure_director_pki
from openfl_like.core.experiments import EventKind
from openfl_like.pki import PkiStore

ENVOYS = ("env_a", "env_b")
FEDERATION = "bench_lab"
CONTRACT = {"features": [64], "dtype": "float32", "label": "classes",
            "classes": [str(i) for i in range(10)]}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_configs(root: Path, port: int) -> None:
    low = free_port()
    (root / "director.yaml").write_text(yaml.safe_dump({"director": {
        "name": "director", "host": "127.0.0.1", "port": port, "federation": FEDERATION,
        "workspace": "workspace/director", "heartbeat_seconds": 2,
        "aggregator_ports": [low, low + 40], "max_running_experiments": 1}}))
    (root / "data").mkdir()
    for index, name in enumerate(ENVOYS):
        (root / "data" / f"{name}.yaml").write_text(yaml.safe_dump(
            {"loader": "digits", "params": {"shard": index, "num_shards": len(ENVOYS)}}))
    (root / "envoy.yaml").write_text(yaml.safe_dump({
        "envoy": {"director": {"host": "127.0.0.1", "port": port, "name": "director",
                               "federation": FEDERATION}, "workspace": "workspace/{name}"},
        "data": "data/{name}.yaml", "contract": CONTRACT}))


def plan(rounds: int) -> dict[str, Any]:
    return {
        "federation": {"name": "bench"},
        "aggregator": {"rounds_to_train": rounds, "write_plot": False,
                       "write_tensorboard": False},
        "collaborator": {"epochs": 1, "batch_size": 64, "heartbeat_seconds": 0},
        "data_contract": CONTRACT,
        "task_runner": {"name": "numpy", "params": {"model": "softmax"}},
        "stragglers": {"enabled": True, "min_collaborators": 2},
        "network": {"tls": True},
    }


def import_cost(module: str) -> float:
    """Seconds to start Python and import ``module`` (median of 3)."""
    times = []
    for _ in range(3):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True)
        times.append(time.monotonic() - started)
    return statistics.median(times)


def start(root: Path, *args: str, log: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "openfl_like.cli.main", *args],
                            cwd=root, stdout=(root / log).open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def run_experiment(lab: Experimenter, folder: Path, name: str) -> dict[str, Any]:
    submitted = time.time()
    lab.submit(folder, name=name)
    accepted = time.time()
    marks: dict[str, float] = {}
    latencies: list[float] = []
    for event in lab.events(name):
        now = time.time()
        if event.kind is EventKind.STATUS and event.text.startswith("starting"):
            marks.setdefault("dispatched", event.time)  # the director's clock: launched, told
        if event.kind is EventKind.STATUS and event.text.startswith("running"):
            marks.setdefault("up", now)
        if event.kind is EventKind.METRICS and event.source in ENVOYS:
            marks.setdefault("first_task", now)
        if (event.kind is EventKind.METRICS and event.source == "aggregator"
                and event.task != "final"):
            latencies.append(now - event.time)
    state = lab.status(name)["state"]
    return {"accepted": accepted - submitted,
            "dispatched": marks.get("dispatched", float("nan")) - submitted,
            "up": marks.get("up", float("nan")) - submitted,
            "first_task": marks.get("first_task", float("nan")) - submitted,
            "latencies": latencies, "state": state}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    print(f"cores {os.cpu_count()}, load average {os.getloadavg()}")
    floor_agg = import_cost("openfl_like.app.aggregator")
    floor_col = import_cost("openfl_like.app.collaborator")
    print(f"this machine: python + imports of `fx aggregator start` {floor_agg:.2f} s, of "
          f"`fx collaborator start` {floor_col:.2f} s")
    root = Path(tempfile.mkdtemp(prefix="bench-director-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port = free_port()
        write_configs(root, port)
        ensure_director_pki(PkiStore(root / "pki"), director="director", envoys=ENVOYS,
                            experimenters=("alice",))
        pki = str(root / "pki")
        procs.append(start(root, "director", "start", "-c", "director.yaml", "--pki-dir", pki,
                           log="director.log"))
        for envoy in ENVOYS:
            procs.append(start(root, "envoy", "start", "-n", envoy, "-c", "envoy.yaml",
                               "--pki-dir", pki, log=f"{envoy}.log"))
        lab = Experimenter.connect(f"127.0.0.1:{port}", name="alice", pki_dir=pki,
                                   federation=FEDERATION)
        with lab:
            deadline = time.monotonic() + 60
            while {e["name"] for e in lab.envoys() if e.get("online")} < set(ENVOYS):
                if time.monotonic() > deadline:
                    raise SystemExit(f"envoys did not register; logs in {root}")
                time.sleep(0.2)  # start-up only; not part of any figure
            rtts = []
            for _ in range(20):
                started = time.monotonic()
                lab.envoys()
                rtts.append(time.monotonic() - started)
            rtt = statistics.median(rtts)
            print(f"this machine: a director call's round trip (GetEnvoys, open channel) "
                  f"{rtt * 1000:.1f} ms")
            folder = root / "experiment"
            folder.mkdir()
            (folder / "plan.yaml").write_text(yaml.safe_dump(plan(args.rounds)))
            print(f"{'experiment':>10} {'accepted':>9} {'dispatch':>9} {'agg. up':>8} "
                  f"{'1st task':>9} "
                  f"{'metric latency p50/max':>23} {'state':>9}")
            rows = []
            for index in range(args.experiments):
                row = run_experiment(lab, folder, f"bench-{index}")
                rows.append(row)
                lat = row["latencies"]
                print(f"{index:>10} {row['accepted'] * 1000:>7.0f}ms "
                      f"{row['dispatched'] * 1000:>7.0f}ms {row['up']:>7.2f}s "
                      f"{row['first_task']:>8.2f}s {statistics.median(lat) * 1000:>10.1f} / "
                      f"{max(lat) * 1000:>6.1f} ms {row['state']:>9}", flush=True)
        dispatched = statistics.median(r["dispatched"] for r in rows)
        print(f"median: dispatched {dispatched * 1000:.0f} ms after submission (the field's "
              "reference implementation: 0-10 s, its envoys poll every 10 s)")
        up = statistics.median(r["up"] for r in rows)
        first = statistics.median(r["first_task"] for r in rows)
        lat_all = [x for r in rows for x in r["latencies"]]
        print(f"median: aggregator up {up:.2f} s after submission = {up / floor_agg:.1f}x the "
              f"cost of starting its process; first round started {first:.2f} s after "
              f"submission = {first / (floor_agg + floor_col):.1f}x starting both processes")
        print(f"metric latency over {len(lat_all)} rounds: median "
              f"{statistics.median(lat_all) * 1000:.1f} ms = "
              f"{statistics.median(lat_all) / rtt:.1f}x a director round trip")
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
