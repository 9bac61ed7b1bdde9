"""What unparsable requests cost a real aggregator: RSS before and after N garbage unary calls.

    .venv/bin/python bench/bench_hostile.py                     # 100,000 requests
    .venv/bin/python bench/bench_hostile.py --requests 20000 --concurrency 32

A child process runs our AggregatorGRPCServer (mutual TLS, certificates from our PKI in a temp
dir) over a trivial handler, so its RSS is its own. This process, holding a valid collaborator
certificate, sends unary requests whose bytes cannot be parsed (a length-delimited field longer
than the message, then random bytes) to every unary method in turn, ``--concurrency`` calls in
flight, and reads the child's VmRSS from /proc after a warm-up and after the run.

Target: RSS after within 10 MB of RSS before. Before the fix (grpc deserializers registered with
the server) every such call left ~16-19 KB behind in grpc's failure path: ~1.7 GB per 100,000.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from openfl_like.core.ids import Role
from openfl_like.core.messages import (
    HandshakeReply,
    HeartbeatReply,
    NamedTensor,
    PollStatus,
    ResultAck,
    TaskResult,
    TasksReply,
)
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.protocol.service import AGGREGATOR_RPCS, UNARY_UNARY
from openfl_like.transport.aggregator_server import AggregatorGRPCServer
from openfl_like.transport.credentials import TlsFiles, channel_credentials
from openfl_like.transport.settings import TransportSettings

AGGREGATOR = "aggregator"
COLLABORATOR = "col-a"
FEDERATION = "bench-hostile"
MB = 1024 * 1024


class IdleHandler:
    """Answers everything at once; only the transport's cost is measured."""

    def is_authorized(self, collaborator: str) -> bool:
        return collaborator == COLLABORATOR

    def handshake(self, collaborator: str, plan_digest: str,
                  plan_fingerprint: Mapping[str, str]) -> HandshakeReply:
        return HandshakeReply(round_number=0, rounds_total=1)

    def heartbeat(self, collaborator: str) -> HeartbeatReply:
        return HeartbeatReply(round_number=0)

    def get_tasks(self, collaborator: str, wait_seconds: float) -> TasksReply:
        return TasksReply(PollStatus.WAIT, 0)

    def get_aggregated_tensors(self, collaborator: str, round_number: int, names: Sequence[str],
                               tags: Sequence[str]) -> Iterable[NamedTensor]:
        return []

    def send_local_task_results(self, result: TaskResult, tensors: object) -> ResultAck:
        return ResultAck(accepted=True)

    def status(self) -> Mapping[str, object]:
        return {}


def serve(pki_dir: Path) -> None:
    """Child: run the server until stdin closes; print its port first."""
    store = PkiStore(pki_dir)
    server = AggregatorGRPCServer(
        IdleHandler(), aggregator_name=AGGREGATOR, federation_uuid=FEDERATION,
        tls_files=TlsFiles.for_participant(store, AGGREGATOR),
        settings=TransportSettings(server_workers=64),
    )
    running = server.start(host="127.0.0.1", port=0)
    print(f"PORT {running.port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        running.stop(0)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def garbage(rng: random.Random) -> bytes:
    """Bytes no protobuf parser accepts: field 1 claims ~2 GB, then random filler."""
    return b"\x0a\xff\xff\xff\xff\x07" + rng.randbytes(rng.randint(8, 256))


def hammer(channel: grpc.Channel, count: int, concurrency: int, seed: int) -> Counter[str]:
    """Send ``count`` garbage unary calls, ``concurrency`` at a time; count the status codes."""
    methods = [rpc.path for rpc in AGGREGATOR_RPCS.values() if rpc.kind == UNARY_UNARY]
    calls = [channel.unary_unary(path) for path in methods]
    codes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(index: int) -> None:
        rng = random.Random(seed + index)
        local: Counter[str] = Counter()
        for n in range(index, count, concurrency):
            try:
                calls[n % len(calls)](garbage(rng), timeout=30)
                local["OK"] += 1
            except grpc.RpcError as error:
                local[error.code().name] += 1
        with lock:
            codes.update(local)

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    return codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return 0

    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        store = PkiStore(Path(tmp) / "pki")
        ca = CertificateAuthority.init(store)
        ca.certify(AGGREGATOR, Role.AGGREGATOR, sans=["127.0.0.1", "localhost"])
        ca.certify(COLLABORATOR, Role.COLLABORATOR)
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(store.root)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy(),
        )
        try:
            assert child.stdout is not None
            line = child.stdout.readline()
            if not line.startswith("PORT "):
                raise SystemExit(f"server did not start: {line!r}")
            port = int(line.split()[1])
            creds = channel_credentials(TlsFiles.for_participant(store, COLLABORATOR))
            with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
                hammer(channel, args.warmup, args.concurrency, seed=1)
                before = rss_bytes(child.pid)
                started = time.perf_counter()
                codes = hammer(channel, args.requests, args.concurrency, seed=2)
                elapsed = time.perf_counter() - started
                after = rss_bytes(child.pid)
        finally:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(30)

    delta = after - before
    print(f"garbage unary requests: {args.requests} in {elapsed:.1f} s "
          f"({args.requests / elapsed:,.0f}/s, {args.concurrency} in flight), "
          f"after a warm-up of {args.warmup}")
    print(f"status codes: {dict(codes)}")
    print(f"server RSS before {before / MB:.1f} MB, after {after / MB:.1f} MB, "
          f"delta {delta / MB:+.1f} MB ({delta / args.requests:+.1f} B per request)")
    ok = abs(delta) <= 10 * MB and set(codes) == {"INVALID_ARGUMENT"}
    verdict = "met" if ok else "MISSED"
    print(f"target (delta within 10 MB, every request INVALID_ARGUMENT): {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
