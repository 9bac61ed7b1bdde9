"""Round benchmark: what a federation round costs beyond the training itself.

Run: ``.venv/bin/python bench/bench_rounds.py [--sizes 2,8,32] [--rounds 20] [--big-mib 256]
[--skip-big] [--skip-demo]``

In one run it prints, each figure next to its target:

(a) Round overhead, noop runner (no compute, a 4 KiB model), 2 / 8 / 32 collaborators: the time
    from a round's close (the aggregator's ``closed_at``) to the moment the LAST collaborator
    holds its next task, and the time per round (close to close). The aggregator is a real
    `fx aggregator start` process; the collaborators run as threads of this process, each with
    its own mutual-TLS gRPC channel, runner and federation loop (32 Python processes would
    measure the 2-core machine's scheduler more than the federation). Targets: < 10 ms per
    round at 2 collaborators, < 100 ms at 32 (128 is reported without a target).
(b) A 256 MiB model (FedAvg, noop training that shifts the weights), 2 collaborators, every
    participant a separate `fx` process: time per round as a ratio to a plain mutual-TLS socket
    pair moving the same 1 GiB that a round moves through the aggregator (target <= 1.5 x), and
    the aggregator's peak RSS from wait4's rusage (target <= 2 x model + 150 MB). For context,
    the same run measures this machine's memory copy and disk write bandwidth.
(c) The demo's work: Keras CNN on digits, 2 collaborators, 5 rounds, via `fx plan run` in a
    fresh workspace and PKI (certificates included), start to final model. Target: < 30 s.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml

from openfl_like.app.collaborator import GrpcAggregatorPort, build_runner
from openfl_like.app.settings import transport_settings
from openfl_like.core.ids import Role
from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    PollStatus,
    ResultAck,
    TaskResult,
    TasksReply,
)
from openfl_like.federation.collaborator import Collaborator, CollaboratorSettings
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.plan import load_plan
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.credentials import TlsFiles

REPO = Path(__file__).resolve().parents[1]
FX_SCRIPT = Path(sys.executable).with_name("fx")
FX = [str(FX_SCRIPT)] if FX_SCRIPT.exists() else [sys.executable, "-m", "openfl_like.cli.main"]
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
MB = 1e6
MIB = 2**20
GIB = 2**30
ROUND_TARGETS = {2: 0.010, 32: 0.100}  # seconds per round, (a)


# ------------------------------------------------------------------------------------ helpers
def fx_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FX_")}
    env["FX_LOG_LEVEL"] = "WARNING"  # logging must not be part of what is timed
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def make_pki(root: Path, names: Sequence[str]) -> PkiStore:
    store = PkiStore(root)
    ca = CertificateAuthority.init(store)
    ca.certify("aggregator", Role.AGGREGATOR, sans=["localhost", "127.0.0.1"])
    for name in names:
        ca.certify(name, Role.COLLABORATOR)
    return store


def write_plan(source: str, dest: Path, names: Sequence[str], edits: Mapping[str, object]) -> Path:
    """Copy ``plans/<source>`` with dotted-key edits and ``names`` as its collaborators."""
    shutil.copytree(REPO / "plans" / source, dest,
                    ignore=shutil.ignore_patterns("workspace", "pki"))
    doc = yaml.safe_load((dest / "plan.yaml").read_text())
    for dotted, value in edits.items():
        node = doc
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    (dest / "plan.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (dest / "cols.yaml").write_text(yaml.safe_dump({"collaborators": list(names)}))
    (dest / "data.yaml").write_text(yaml.safe_dump({n: i for i, n in enumerate(names)}))
    return dest


def col_names(count: int) -> list[str]:
    return [f"col{i + 1}" for i in range(count)]


@dataclass
class Aggregator:
    """`fx aggregator start` in its own process; ``wait`` reaps it with its rusage."""

    popen: subprocess.Popen[str]
    port: int = 0
    lines: list[str] = field(default_factory=list)
    peak_rss_bytes: int = 0  # ru_maxrss: every resident page, file-backed (mmap) ones included
    peak_anon_bytes: int = 0  # RssAnon sampled every 10 ms: heap and buffers only

    @classmethod
    def start(cls, plan: Path, pki: Path, workspace: Path) -> Aggregator:
        popen = subprocess.Popen(
            [*FX, "--log-level", "INFO", "aggregator", "start", "-p", str(plan),
             "--pki-dir", str(pki), "--workspace", str(workspace), "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, env=fx_env() | {"FX_LOG_LEVEL": "INFO"}, start_new_session=True,
        )
        agg = cls(popen)
        assert popen.stderr is not None
        agg.port = agg._read_port(popen.stderr)
        threading.Thread(target=agg._drain, args=(popen.stderr,), daemon=True).start()
        threading.Thread(target=agg._sample_anon, daemon=True).start()
        return agg

    def _sample_anon(self) -> None:
        status = Path(f"/proc/{self.popen.pid}/status")
        while self.popen.returncode is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        anon = int(line.split()[1]) * 1024
                        self.peak_anon_bytes = max(self.peak_anon_bytes, anon)
            except (OSError, ValueError):
                return
            time.sleep(0.01)  # a sampler beside the run, not a wait on its path

    def _read_port(self, stream: IO[str]) -> int:
        for line in stream:  # blocks on the pipe: readiness is the log line, not a sleep
            self.lines.append(line)
            match = LISTENING.search(line)
            if match:
                return int(match.group(1))
        raise RuntimeError("aggregator exited before listening:\n" + "".join(self.lines))

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait(self, timeout: float) -> int:
        """Reap the process with os.wait4 so its peak RSS (ru_maxrss) is known."""
        end = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.popen.pid, os.WNOHANG)
            if pid:
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                self.peak_rss_bytes = usage.ru_maxrss * 1024
                if self.popen.returncode != 0:
                    raise RuntimeError(f"aggregator exited {self.popen.returncode}:\n"
                                       + "".join(self.lines[-20:]))
                return self.popen.returncode
            if time.monotonic() > end:
                self.popen.kill()
                raise RuntimeError("aggregator did not finish:\n" + "".join(self.lines[-20:]))
            time.sleep(0.05)  # reaping after the measured work; not on any timed path


def history(workspace: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((workspace / "outputs" / "metrics.json").read_text())
    return data


def close_to_close(records: Sequence[Mapping[str, Any]]) -> list[float]:
    """Seconds between consecutive round closes, from round 1 on (round 0 includes start-up)."""
    closes = [float(r["closed_at"]) for r in records]
    return [b - a for a, b in itertools.pairwise(closes[1:])]


def ms(values: Sequence[float]) -> str:
    p95 = sorted(values)[max(0, math.ceil(0.95 * len(values)) - 1)]  # nearest rank
    return (f"median {statistics.median(values) * 1e3:7.1f} ms, p95 {p95 * 1e3:7.1f} ms, "
            f"max {max(values) * 1e3:7.1f} ms (n={len(values)})")


def verdict(ok: bool) -> str:
    return "OK  " if ok else "MISS"


# ------------------------------------------------------------------------------ (a) overhead
class TimingPort:
    """An AggregatorPort that notes when each round's task list reaches this collaborator, and
    how long the model download and the result upload calls take (where a round's time goes)."""

    def __init__(self, inner: GrpcAggregatorPort, received: dict[int, float],
                 calls: dict[str, list[float]]) -> None:
        self.inner = inner
        self.received = received
        self.calls = calls

    def handshake(self, plan_digest: str, fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int], contract_digest: str = "") -> HandshakeReply:
        return self.inner.handshake(plan_digest, fingerprint, sample_counts, contract_digest)

    def get_tasks(self) -> TasksReply:
        reply = self.inner.get_tasks()
        if reply.status is PollStatus.WORK:
            self.received.setdefault(reply.round_number, time.time())
        return reply

    def get_aggregated_tensors(self, round_number: int, names: Sequence[str]
                               ) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        try:
            return self.inner.get_aggregated_tensors(round_number, names)
        finally:
            self.calls.setdefault("download", []).append(time.perf_counter() - start)

    def send_local_task_results(self, result: TaskResult, tensors: Mapping[str, np.ndarray]
                                ) -> ResultAck:
        start = time.perf_counter()
        try:
            return self.inner.send_local_task_results(result, tensors)
        finally:
            self.calls.setdefault("upload", []).append(time.perf_counter() - start)

    def heartbeat(self) -> HeartbeatReply:
        return self.inner.heartbeat()


@dataclass
class ThreadRun:
    received: dict[str, dict[int, float]]  # collaborator -> round -> when its tasks arrived
    calls: dict[str, list[float]]  # "download" / "upload" -> call durations (all collaborators)


def run_thread_collaborators(plan_dir: Path, pki: PkiStore, port: int,
                             names: Sequence[str]) -> ThreadRun:
    """Every collaborator as a thread of this process, each with its own channel."""
    plan = load_plan(plan_dir)
    settings = transport_settings(plan)
    received: dict[str, dict[int, float]] = {n: {} for n in names}
    calls: dict[str, list[float]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        try:
            client = AggregatorGRPCClient(
                host="127.0.0.1", port=port, collaborator_name=name,
                aggregator_name=plan.aggregator.name, federation_uuid=plan.federation_uuid,
                tls_files=TlsFiles.for_participant(pki, name), settings=settings,
            )
            with client:
                port_ = TimingPort(GrpcAggregatorPort(client), received[name], calls)
                loop = Collaborator(name, port_, build_runner(plan, name),
                                    CollaboratorSettings.from_plan(plan))
                loop.run()
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), name=n) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} collaborator thread(s) failed: {errors[0]!r}")
    return ThreadRun(received, calls)


@dataclass
class Overhead:
    handoff: list[float]  # per round: close -> the last collaborator holds its next task
    per_round: list[float]  # close to close
    calls: dict[str, list[float]]


def bench_overhead(tmp: Path, count: int, rounds: int) -> Overhead:
    names = col_names(count)
    pki = make_pki(tmp / f"pki-{count}", names)
    plan = write_plan("noop_bench", tmp / f"plan-{count}", names, {
        "aggregator.rounds_to_train": rounds,
        "task_runner.params.size_mib": 4 / 1024,  # 4 KiB: no transfer cost to speak of
        "task_runner.params.num_tensors": 4,
        "stragglers.min_collaborators": count,
    })
    workspace = tmp / f"ws-{count}"
    aggregator = Aggregator.start(plan, pki.root, workspace)
    run = run_thread_collaborators(plan, pki, aggregator.port, names)
    aggregator.wait(120)
    records = history(workspace)
    closes = {int(r["round"]): float(r["closed_at"]) for r in records}
    received = run.received
    handoff = [max(received[n][r] for n in names) - closes[r - 1]
               for r in range(1, rounds) if all(r in received[n] for n in names)]
    return Overhead(handoff, close_to_close(records), run.calls)


# ------------------------------------------------------------------------------ (b) big model
def memory_copy_bandwidth(size_bytes: int) -> float:
    """Bytes per second of one numpy copy of ``size_bytes`` (best of 3): this machine's limit."""
    src = np.ones(size_bytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return size_bytes / best


def disk_write_bandwidth(folder: Path, size_bytes: int) -> float:
    """Bytes per second of writing ``size_bytes`` to a file and fsyncing it (the aggregator
    stages every update on disk before folding it in)."""
    data = np.ones(size_bytes // 4, dtype=np.float32)
    path = folder / "disk-probe.bin"
    start = time.perf_counter()
    with open(path, "wb") as handle:
        handle.write(memoryview(data).cast("B"))
        handle.flush()
        os.fsync(handle.fileno())
    seconds = time.perf_counter() - start
    path.unlink()
    return size_bytes / seconds


def bench_big_model(tmp: Path, size_mib: int, rounds: int) -> tuple[list[float], Aggregator]:
    names = col_names(2)
    pki = make_pki(tmp / "pki-big", names)
    plan = write_plan("noop_bench", tmp / "plan-big", names, {
        "aggregator.rounds_to_train": rounds,
        "task_runner.params.size_mib": size_mib,
        "task_runner.params.num_tensors": 4,
        "task_runner.params.delta": 0.001,
        "stragglers.min_collaborators": 2,
    })
    workspace = tmp / "ws-big"
    aggregator = Aggregator.start(plan, pki.root, workspace)
    collaborators = [
        subprocess.Popen(
            [*FX, "collaborator", "start", "-n", name, "-p", str(plan), "--pki-dir",
             str(pki.root), "--workspace", str(tmp / f"ws-big-{name}"),
             "--aggregator", f"127.0.0.1:{aggregator.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=fx_env(),
            start_new_session=True,
        )
        for name in names
    ]
    try:
        for proc in collaborators:
            _, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"collaborator exited {proc.returncode}: {err[-2000:]}")
        aggregator.wait(300)
    finally:
        for proc in collaborators:
            if proc.poll() is None:
                proc.kill()
        if aggregator.popen.poll() is None:
            aggregator.popen.kill()
    return close_to_close(history(workspace)), aggregator


def tls_one_gib_seconds(tmp: Path) -> float:
    """This machine's limit for (b): a plain mutual-TLS socket pair (Python's ssl, our PKI)
    moving 1 GiB, 512 MiB there and back (bench_transport's baseline)."""
    from bench_transport import tls_baseline  # (bench/ is on sys.path when run as a script)

    pki = make_pki(tmp / "pki-tls", ["col-1"])
    return tls_baseline(pki.root, {"blob": np.zeros(GIB // 2, dtype=np.uint8)})


# ------------------------------------------------------------------------------ (c) the demo
def bench_demo(tmp: Path) -> tuple[float, str]:
    plan = write_plan("keras_digits", tmp / "plan-keras", col_names(2),
                      {"aggregator.rounds_to_train": 5, "stragglers.min_collaborators": 2})
    start = time.perf_counter()
    result = subprocess.run(
        [*FX, "plan", "run", str(plan), "--pki-dir", str(tmp / "pki-demo"),
         "--workspace", str(tmp / "ws-demo"), "--port", "0"],
        capture_output=True, text=True, env=fx_env(), timeout=600,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"fx plan run failed ({result.returncode}):\n{result.stderr[-3000:]}")
    match = re.search(r"final test accuracy: (\S+)", result.stdout)
    return seconds, match.group(1) if match else "?"


# ------------------------------------------------------------------------------ main
def section(title: str, body: Callable[[], None]) -> bool:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{title}   [load average before: {load}]", flush=True)
    try:
        body()
    except Exception as exc:
        print(f"  FAILED: {exc}", flush=True)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2,8,32", help="collaborator counts for (a)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds for (a)")
    parser.add_argument("--big-mib", type=int, default=256, help="model size for (b)")
    parser.add_argument("--big-rounds", type=int, default=6, help="rounds for (b)")
    parser.add_argument("--skip-big", action="store_true", help="skip (b)")
    parser.add_argument("--skip-demo", action="store_true", help="skip (c)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-rounds-"))
    print(f"machine: {os.cpu_count()} cores; workspace {tmp}")
    ok = True
    try:
        def overhead() -> None:
            print("  aggregator: `fx aggregator start` process; collaborators: threads of this "
                  "process, one mutual-TLS channel each; noop runner, 4 KiB model, "
                  f"{args.rounds} rounds")
            for count in (int(s) for s in args.sizes.split(",")):
                result = bench_overhead(tmp, count, args.rounds)
                goal = ROUND_TARGETS.get(count)
                median = statistics.median(result.per_round)
                target = (f"   target < {goal * 1e3:.0f} ms: {verdict(median < goal)}"
                          if goal is not None else "")
                print(f"  {count:3d} collaborators  close -> all hold next task: "
                      f"{ms(result.handoff)}")
                print(f"  {count:3d} collaborators  time per round:              "
                      f"{ms(result.per_round)}{target}")
                for call in ("download", "upload"):
                    times = result.calls.get(call)
                    shown = ms(times) if times else \
                        "none (the model came with the task reply)"
                    print(f"  {count:3d} collaborators    one {call:8s} call:          "
                          f"{shown}", flush=True)

        ok &= section("(a) round overhead", overhead)

        if not args.skip_big:
            def big() -> None:
                size = args.big_mib * MIB
                per_round, agg = bench_big_model(tmp, args.big_mib, args.big_rounds)
                rss = agg.peak_rss_bytes
                limit = 2 * size + 150 * MB
                bandwidth = memory_copy_bandwidth(size)
                disk = disk_write_bandwidth(tmp, size)
                tls = tls_one_gib_seconds(tmp)
                median = statistics.median(per_round)
                print(f"  model {args.big_mib} MiB in 4 tensors, 2 collaborator processes, "
                      f"FedAvg, {args.big_rounds} rounds")
                print(f"  time per round: {ms(per_round)}")
                print(f"  plain mutual-TLS socket pair moving 1 GiB on loopback (512 MiB each "
                      f"way, the bytes a round moves through the aggregator): {tls:.2f} s "
                      f"({GIB / tls / MIB:.0f} MiB/s)")
                print(f"  round / 1 GiB over plain TLS: {median / tls:.2f} x   target <= 1.5 x: "
                      f"{verdict(median / tls <= 1.5)}")
                print(f"  aggregator peak RSS: {rss / MB:7.0f} MB = {rss / size:4.2f} x model   "
                      f"target <= {limit / MB:.0f} MB: {verdict(rss <= limit)}")
                print(f"    of which anonymous memory at most {agg.peak_anon_bytes / MB:.0f} MB "
                      f"(= {agg.peak_anon_bytes / size:.2f} x model; sampled every 10 ms; the "
                      "rest is file pages mapped from the state folder)")
                print(f"  (this machine: one memory copy of the model at {bandwidth / 1e9:.1f} "
                      f"GB/s = {size / bandwidth * 1e3:.0f} ms; writing it to disk with fsync "
                      f"at {disk / MB:.0f} MB/s = {size / disk * 1e3:.0f} ms)", flush=True)

            ok &= section("(b) large model", big)

        if not args.skip_demo:
            def demo() -> None:
                seconds, accuracy = bench_demo(tmp)
                print("  `fx plan run`: Keras CNN on digits, 2 collaborators, 5 rounds, fresh PKI")
                print(f"  start to final model: {seconds:6.1f} s (final test accuracy "
                      f"{accuracy})   target < 30 s: {verdict(seconds < 30)}", flush=True)

            ok &= section("(c) the demo's work", demo)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
