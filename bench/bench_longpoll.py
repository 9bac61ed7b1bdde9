"""How many parked GetTasks long-polls one AggregatorGRPCServer holds, and what they cost.

    .venv/bin/python bench/bench_longpoll.py                    # N = 100, 500, 1000
    .venv/bin/python bench/bench_longpoll.py --n 1000 --workers 256 1100

This process runs our AggregatorGRPCServer (mutual TLS, certificates from our PKI in a temp dir)
over a handler whose ``get_tasks`` parks on one ``threading.Condition``. A child process (so the
server's RSS is its own) opens one grpc.aio channel per collaborator, each with that
collaborator's own certificate - one TLS connection and one HTTP/2 stream each, as N separate
collaborator processes would, so no per-connection stream limit applies - and parks N GetTasks
calls. While they are parked we measure the server's RSS, thread count and CPU use (the cost of
re-checking abandoned polls every ``long_poll_slice_seconds``) and the latency of a Heartbeat from
one more collaborator (does the server still answer others?). Then the handler releases every
poll at once and the child reports when the last of the N replies arrived.

A sync grpc server holds one worker thread per parked call; calls beyond ``server_workers`` queue
inside grpc and wait for a free thread - and so does every other RPC, which is the failure mode
the Heartbeat probe shows.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from openfl_like.core.ids import Role
from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    NamedTensor,
    PollStatus,
    ResultAck,
    TaskKind,
    TaskResult,
    TaskSpec,
    TasksReply,
)
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.aggregator_server import AggregatorGRPCServer
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.settings import RetrySettings, TransportSettings

AGGREGATOR = "aggregator"
FEDERATION = "bench-longpoll"
PROBE = "probe"
POLL_SECONDS = 300.0  # longer than any run: every poll is parked until released


def col(i: int) -> str:
    return f"col-{i:04d}"


class ParkingHandler:
    """An AggregatorHandler whose get_tasks parks until ``release()``: nothing else matters here."""

    def __init__(self, collaborators: set[str]) -> None:
        self._collaborators = collaborators
        self._cond = threading.Condition()
        self._released = False
        self.parked = 0
        self.arrived: set[str] = set()

    def release(self) -> None:
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def is_authorized(self, collaborator: str) -> bool:
        return collaborator in self._collaborators

    def handshake(self, collaborator: str, plan_digest: str,
                  plan_fingerprint: Mapping[str, str]) -> HandshakeReply:  # fmt: skip
        return HandshakeReply(round_number=0, rounds_total=1)

    def heartbeat(self, collaborator: str) -> HeartbeatReply:
        return HeartbeatReply(round_number=0)

    def get_tasks(self, collaborator: str, wait_seconds: float) -> TasksReply:
        with self._cond:
            self.arrived.add(collaborator)
            self.parked += 1
            try:
                released = self._cond.wait_for(lambda: self._released, wait_seconds)
            finally:
                self.parked -= 1
        if not released:
            return TasksReply(PollStatus.WAIT, 0, reason="parked")
        return TasksReply(PollStatus.WORK, 0, (TaskSpec("train", TaskKind.TRAIN, 0, {}),))

    def get_aggregated_tensors(
        self, collaborator: str, round_number: int, names: Sequence[str], tags: Sequence[str]
    ) -> Iterable[NamedTensor]:
        return []

    def send_local_task_results(self, result: TaskResult,
                                tensors: Iterator[NamedTensor]) -> ResultAck:  # fmt: skip
        for _ in tensors:
            pass
        return ResultAck(accepted=True)

    def status(self) -> Mapping[str, object]:
        return {"parked": self.parked}


# -- measurements of this (the server's) process ---------------------------------------------


def proc_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def probe_client(port: int, store: PkiStore, settings: TransportSettings) -> AggregatorGRPCClient:
    """One probe process: its instance id stays the same across reconnects (instances.py)."""
    return AggregatorGRPCClient(
        host="127.0.0.1", port=port, collaborator_name=PROBE, aggregator_name=AGGREGATOR,
        federation_uuid=FEDERATION, tls_files=TlsFiles.for_participant(store, PROBE),
        settings=settings,
    )  # fmt: skip


def probe_heartbeat(client: AggregatorGRPCClient) -> str:
    """A heartbeat over a fresh connection (TLS handshake included), as a newcomer would make."""
    started = time.monotonic()
    try:
        with client:
            client.heartbeat()
    except Exception as exc:  # the figure is "it failed, and how"
        return f"FAILED after {time.monotonic() - started:.1f}s ({type(exc).__name__})"
    return f"{(time.monotonic() - started) * 1000:.0f} ms"


@dataclass
class Row:
    n: int
    workers: int
    parked: int
    park_seconds: float
    rss_idle_mb: float
    rss_parked_mb: float
    threads: int
    cpu_percent: float
    heartbeat: str
    release_seconds: float
    replies: int
    errors: str


def run_one(n: int, workers: int, slice_seconds: float, store: PkiStore) -> Row:
    handler = ParkingHandler({col(i) for i in range(n)} | {PROBE})
    settings = TransportSettings(
        long_poll_seconds=POLL_SECONDS, long_poll_slice_seconds=slice_seconds,
        server_workers=workers, rpc_timeout_seconds=5.0,
        retry=RetrySettings(initial_backoff_seconds=0.2, total_seconds=1.0),
    )  # fmt: skip
    servicer = AggregatorGRPCServer(
        handler, aggregator_name=AGGREGATOR, federation_uuid=FEDERATION,
        tls_files=TlsFiles.for_participant(store, AGGREGATOR), settings=settings,
    )  # fmt: skip
    running = servicer.start(host="127.0.0.1", port=0)
    probe = probe_client(running.port, store, settings)
    probe_heartbeat(probe)  # idle RSS with grpc and TLS warmed up
    rss_idle = proc_status("VmRSS") / 1024
    child = subprocess.Popen(
        [sys.executable, __file__, "--client", "--port", str(running.port),
         "--pki", str(store.root), "--n", str(n)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        json.loads(child.stdout.readline())  # {"sent": n}: every call is issued
        started = time.monotonic()
        # parked: all N inside the handler, or (thread pool full) no change for 3 s
        last, stable_since = -1, time.monotonic()
        while len(handler.arrived) < n and time.monotonic() - stable_since < 3.0:
            if len(handler.arrived) != last:
                last, stable_since = len(handler.arrived), time.monotonic()
            time.sleep(0.05)
        park_seconds = time.monotonic() - started
        time.sleep(1.0)
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        time.sleep(5.0)
        cpu_percent = 100 * (cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        rss_parked = proc_status("VmRSS") / 1024
        threads = proc_status("Threads")
        parked = len(handler.arrived)
        heartbeat = probe_heartbeat(probe)

        released_at = time.monotonic()
        handler.release()
        report = json.loads(child.stdout.readline())
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        running.stop(0)
    return Row(
        n=n, workers=workers, parked=parked, park_seconds=park_seconds, rss_idle_mb=rss_idle,
        rss_parked_mb=rss_parked, threads=threads, cpu_percent=cpu_percent, heartbeat=heartbeat,
        release_seconds=report["last"] - released_at, replies=report["work"],
        errors=", ".join(f"{k} x{v}" for k, v in report["errors"].items()) or "none",
    )  # fmt: skip


# -- the client process: N collaborators, one grpc.aio channel (TLS connection) each ----------


async def park_all(port: int, store: PkiStore, n: int) -> dict[str, object]:
    import grpc

    from openfl_like.protocol import aggregator_pb2 as pb
    from openfl_like.protocol import base_pb2
    from openfl_like.protocol.service import AGGREGATOR_RPCS
    from openfl_like.transport.credentials import channel_credentials

    rpc = AGGREGATOR_RPCS["GetTasks"]
    channels = []
    calls = []
    for i in range(n):
        channel = grpc.aio.secure_channel(
            f"127.0.0.1:{port}", channel_credentials(TlsFiles.for_participant(store, col(i))),
            options=[("grpc.use_local_subchannel_pool", 1)],
        )  # fmt: skip
        channels.append(channel)
        header = base_pb2.MessageHeader(sender=col(i), receiver=AGGREGATOR,
                                        federation_uuid=FEDERATION)  # fmt: skip
        stub = channel.unary_unary(rpc.path, request_serializer=rpc.serialize_request,
                                   response_deserializer=rpc.deserialize_response)  # fmt: skip
        calls.append(stub(pb.GetTasksRequest(header=header, wait_seconds=POLL_SECONDS),
                          timeout=POLL_SECONDS))  # fmt: skip
    print(json.dumps({"sent": n}), flush=True)

    arrivals: list[float] = []
    errors: dict[str, int] = {}
    work = 0

    async def one(call: object) -> None:
        nonlocal work
        try:
            reply = await call  # type: ignore[misc]
            work += reply.status == str(PollStatus.WORK)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
        arrivals.append(time.monotonic())

    await asyncio.gather(*(one(c) for c in calls))
    for channel in channels:
        await channel.close()
    return {"last": max(arrivals), "work": work, "errors": errors}


def client_main(port: int, pki: Path, n: int) -> None:
    report = asyncio.run(park_all(port, PkiStore(pki), n))
    print(json.dumps(report), flush=True)


# -- main ---------------------------------------------------------------------------------------


def make_pki(root: Path, n: int) -> PkiStore:
    store = PkiStore(root)
    ca = CertificateAuthority.init(store)
    ca.certify(AGGREGATOR, Role.AGGREGATOR, sans=["localhost", "127.0.0.1"])
    for name in [PROBE, *(col(i) for i in range(n))]:
        ca.certify(name, Role.COLLABORATOR)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000])
    defaults = TransportSettings()
    parser.add_argument("--workers", type=int, nargs="+", default=[defaults.server_workers])
    parser.add_argument("--slice", type=float, default=defaults.long_poll_slice_seconds)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.port, args.pki, args.n[0])
        return
    if args.server:  # one configuration in a fresh process, so RSS figures are its own
        row = run_one(args.n[0], args.workers[0], args.slice, PkiStore(args.pki))
        print(json.dumps(dataclasses.asdict(row)), flush=True)
        return

    print(f"cores {os.cpu_count()}, load average {os.getloadavg()}, long_poll_slice_seconds "
          f"{args.slice}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-longpoll-") as tmp:
        started = time.monotonic()
        store = make_pki(Path(tmp), max(args.n))
        print(f"PKI with {max(args.n) + 2} certificates in {time.monotonic() - started:.1f}s")
        header = (f"{'N':>5} {'workers':>7} {'parked':>6} {'park s':>6} {'RSS idle':>8} "
                  f"{'RSS parked':>10} {'threads':>7} {'CPU %':>5} {'heartbeat':>22} "
                  f"{'release s':>9} {'replies':>7}  errors")  # fmt: skip
        print(header)
        for n in args.n:
            for workers in args.workers:
                out = subprocess.run(
                    [sys.executable, __file__, "--server", "--pki", str(store.root),
                     "--n", str(n), "--workers", str(workers), "--slice", str(args.slice)],
                    check=True, stdout=subprocess.PIPE, text=True, timeout=600,
                )  # fmt: skip
                row = Row(**json.loads(out.stdout.splitlines()[-1]))
                print(f"{row.n:>5} {row.workers:>7} {row.parked:>6} {row.park_seconds:>6.1f} "
                      f"{row.rss_idle_mb:>6.0f}MB {row.rss_parked_mb:>8.0f}MB {row.threads:>7} "
                      f"{row.cpu_percent:>5.1f} {row.heartbeat:>22} {row.release_seconds:>9.3f} "
                      f"{row.replies:>7}  {row.errors}", flush=True)  # fmt: skip
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
