"""Unparsable unary requests cost a real mutual-TLS server no memory (RSS of its own process).

Before the servicer parsed requests itself, every such request left ~16-19 KB in grpc's failure
path (a deserializer registered with grpc that raises): 4,000 of them grew the server by
~70 MB. Now they are INVALID_ARGUMENT and the server's RSS stays flat. bench/bench_hostile.py
runs the same with 100,000 requests.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import base_pb2
from openfl_like.protocol.service import AGGREGATOR_RPCS, UNARY_UNARY
from openfl_like.transport.credentials import channel_credentials

from .conftest import AGGREGATOR, FEDERATION

MB = 1024 * 1024
WARMUP, REQUESTS, THREADS = 1_000, 4_000, 8
ROOT = Path(__file__).resolve().parents[3]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send_garbage(channel: grpc.Channel, count: int, seed: int) -> Counter[str]:
    # GetStatus is for operators: a collaborator is refused by role before its bytes are read
    calls = [channel.unary_unary(rpc.path) for rpc in AGGREGATOR_RPCS.values()
             if rpc.kind == UNARY_UNARY and rpc.name != "GetStatus"]

    def run(index: int) -> Counter[str]:
        rng, codes = random.Random(seed * 100 + index), Counter[str]()
        for n in range(index, count, THREADS):
            # a length-delimited field claiming ~2 GB, then random bytes: never parsable
            payload = b"\x0a\xff\xff\xff\xff\x07" + rng.randbytes(rng.randint(8, 256))
            try:
                calls[n % len(calls)](payload, timeout=30)
                codes["OK"] += 1
            except grpc.RpcError as error:
                codes[error.code().name] += 1
        return codes

    with ThreadPoolExecutor(THREADS) as pool:
        return sum(pool.map(run, range(THREADS)), Counter())


@pytest.fixture
def server_process(pki):
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.transport.garbage_server", str(pki.store.root)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        line = child.stdout.readline()  # readiness: the server prints its port once listening
        assert line.startswith("PORT "), line
        yield child, int(line.split()[1])
    finally:
        child.stdin.close()
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(5)
        child.stdout.close()


@pytest.mark.slow
def test_garbage_unary_requests_leave_server_rss_flat(pki, server_process):
    # Prepare: a valid call works, and a warm-up lets grpc's pools and threads settle
    child, port = server_process
    creds = channel_credentials(pki.files("col-a"))
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        header = base_pb2.MessageHeader(
            sender="col-a", receiver=AGGREGATOR, federation_uuid=FEDERATION)
        heartbeat = channel.unary_unary(AGGREGATOR_RPCS["Heartbeat"].path)
        assert heartbeat(pb.HeartbeatRequest(header=header).SerializeToString(), timeout=10)
        send_garbage(channel, WARMUP, seed=1)
        before = rss(child.pid)

        # Execute
        codes = send_garbage(channel, REQUESTS, seed=2)
        after = rss(child.pid)

        # Assert: every one refused with a reason, none left anything behind (~70 MB before)
        assert codes == Counter({"INVALID_ARGUMENT": REQUESTS})
        assert after - before < 4 * MB, f"RSS grew {(after - before) / MB:.1f} MB"
        # ... and the server still answers a valid call
        assert heartbeat(pb.HeartbeatRequest(header=header).SerializeToString(), timeout=10)
