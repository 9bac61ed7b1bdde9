"""Transfer benchmark: a model streamed aggregator -> collaborator and back over mutual TLS.

Run: ``.venv/bin/python bench/bench_transport.py [--size-mib 1024] [--chunk-mib 4]``

In one run it prints
- MB/s of our AggregatorGRPCServer -> AggregatorGRPCClient download and the upload back
  (server in a separate process, so peak RSS is per side);
- MB/s of a plain Python TLS socket pair (ssl module, mutual TLS, two processes) moving the
  same bytes both ways on loopback: this machine's limit;
- the ratio, and the peak RSS (VmHWM) of each side;
- the load average (1/5/15 min) at start and end: both transfers compete with whatever else
  runs on this machine, so judge the ratio against it (load above the core count skews it).
Targets: ratio >= 0.8 and peak RSS per side <= 2 x model + 200 MB.
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from openfl_like.core.ids import Role
from openfl_like.core.messages import (
    AGGREGATED_TAG,
    HandshakeReply,
    HeartbeatReply,
    NamedTensor,
    PollStatus,
    ResultAck,
    ResultKey,
    TaskResult,
    TasksReply,
)
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.aggregator_server import AggregatorGRPCServer
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.operator_client import OperatorClient
from openfl_like.transport.settings import MIB, TransportSettings

FEDERATION = "bench"


def peak_rss_bytes() -> int:
    """VmHWM of this process (peak resident set), from /proc; falls back to getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_model(size_mib: int, tensors: int) -> dict[str, np.ndarray]:
    per = size_mib * MIB // tensors // 4
    return {f"layer{i}/w": np.arange(per, dtype=np.float32) + i for i in range(tensors)}


class BenchHandler:
    """Serves the model; consumes uploads tensor by tensor and checks them, keeping nothing."""

    def __init__(self, model: dict[str, np.ndarray]) -> None:
        self.model = model
        self.received_ok = 0

    def is_authorized(self, collaborator: str) -> bool:
        return collaborator == "col-1"

    def handshake(self, c: str, d: str, f: Mapping[str, str]) -> HandshakeReply:
        return HandshakeReply(0, 1)

    def heartbeat(self, collaborator: str) -> HeartbeatReply:
        return HeartbeatReply(0)

    def get_tasks(self, collaborator: str, wait_seconds: float) -> TasksReply:
        return TasksReply(PollStatus.DONE, 0)

    def get_aggregated_tensors(
        self, collaborator: str, round_number: int, names: Sequence[str], tags: Sequence[str]
    ) -> Iterable[NamedTensor]:
        return (NamedTensor(n, self.model[n], round_number, (AGGREGATED_TAG,)) for n in names)

    def send_local_task_results(
        self, result: TaskResult, tensors: Iterator[NamedTensor]
    ) -> ResultAck:
        for tensor in tensors:
            expected = self.model[tensor.name]
            ok = tensor.array.shape == expected.shape and tensor.array[-1] == expected[-1]
            self.received_ok += int(ok)
        return ResultAck(accepted=self.received_ok == len(self.model))

    def status(self) -> Mapping[str, object]:
        return {"peak_rss": peak_rss_bytes(), "received_ok": self.received_ok}


def settings(chunk_mib: int) -> TransportSettings:
    return TransportSettings(chunk_size=chunk_mib * MIB, stream_timeout_seconds=600)


def run_grpc_server(pki: Path, size_mib: int, tensors: int, chunk_mib: int) -> None:
    store = PkiStore(pki)
    server = AggregatorGRPCServer(
        BenchHandler(make_model(size_mib, tensors)), aggregator_name="aggregator",
        federation_uuid=FEDERATION, tls_files=TlsFiles.for_participant(store, "aggregator"),
        settings=settings(chunk_mib),
    )
    running = server.start(host="127.0.0.1", port=0)
    print(running.port, flush=True)
    sys.stdin.read()  # parent closes stdin to stop us
    running.stop(0)


def ssl_context(store: PkiStore, name: str, *, server: bool) -> ssl.SSLContext:
    purpose = ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH
    context = ssl.create_default_context(purpose, cafile=str(store.ca_bundle_path))
    context.load_cert_chain(store.cert_path(name), store.key_path(name))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def recv_exactly(sock: ssl.SSLSocket, size: int) -> np.ndarray:
    buffer = np.empty(size, dtype=np.uint8)  # a fresh buffer, as a received model needs
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], min(size - got, 16 * MIB))
        if not n:
            raise ConnectionError("peer closed early")
        got += n
    return buffer


def run_tls_echo(pki: Path, size: int) -> None:
    """Plain TLS peer: receive ``size`` bytes, then send them back."""
    store = PkiStore(pki)
    context = ssl_context(store, "aggregator", server=True)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        print(listener.getsockname()[1], flush=True)
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            data = recv_exactly(tls, size)
            tls.sendall(memoryview(data))


def tls_baseline(pki: Path, model: dict[str, np.ndarray]) -> float:
    """Seconds a plain mutual-TLS socket pair needs to move the model there and back."""
    size = sum(a.nbytes for a in model.values())
    child = subprocess.Popen(
        [sys.executable, __file__, "--tls-echo", "--pki", str(pki), "--bytes", str(size)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        context = ssl_context(PkiStore(pki), "col-1", server=False)
        with socket.create_connection(("127.0.0.1", port)) as raw, context.wrap_socket(
            raw, server_hostname="127.0.0.1"
        ) as tls:
            started = time.perf_counter()
            for array in model.values():
                tls.sendall(memoryview(array.reshape(-1).view(np.uint8)))
            back = recv_exactly(tls, size)
            elapsed = time.perf_counter() - started
        assert back.size == size
        return elapsed
    finally:
        child.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--tensors", type=int, default=8)
    parser.add_argument("--chunk-mib", type=int, default=4)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tls-echo", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        run_grpc_server(args.pki, args.size_mib, args.tensors, args.chunk_mib)
        return 0
    if args.tls_echo:
        run_tls_echo(args.pki, args.bytes)
        return 0

    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        pki = Path(tmp) / "pki"
        store = PkiStore(pki)
        ca = CertificateAuthority.init(store)
        ca.certify("aggregator", Role.AGGREGATOR, sans=["127.0.0.1", "localhost"])
        ca.certify("col-1", Role.COLLABORATOR)
        ca.certify("ops", Role.OPERATOR)  # only an operator may ask for the status
        size = args.size_mib * MIB

        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--pki", str(pki), "--size-mib",
             str(args.size_mib), "--tensors", str(args.tensors), "--chunk-mib",
             str(args.chunk_mib)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None and server.stdin is not None
            port = int(server.stdout.readline())
            names = list(make_model(1, args.tensors))  # names only (tiny model)
            with AggregatorGRPCClient(
                host="127.0.0.1", port=port, collaborator_name="col-1",
                aggregator_name="aggregator", federation_uuid=FEDERATION,
                tls_files=TlsFiles.for_participant(store, "col-1"),
                settings=settings(args.chunk_mib),
            ) as client:
                client.heartbeat()  # connect + TLS handshake outside the timing
                started = time.perf_counter()
                model = client.get_aggregated_tensors(0, names)
                down = time.perf_counter() - started
                arrays = {name: t.array for name, t in model.items()}
                started = time.perf_counter()
                ack = client.send_local_task_results(
                    TaskResult(ResultKey("col-1", 0, "train"), data_size=1), arrays
                )
                up = time.perf_counter() - started
                with OperatorClient(
                    target=f"127.0.0.1:{port}", operator_name="ops",
                    aggregator_name="aggregator", federation_uuid=FEDERATION,
                    tls_files=TlsFiles.for_participant(store, "ops"),
                ) as operator:
                    status = operator.get_status()
            client_rss = peak_rss_bytes()
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(timeout=60)
        assert ack.accepted, f"upload not verified by the server: {status}"
        assert sum(a.nbytes for a in arrays.values()) == size
        server_rss = int(status["peak_rss"])  # type: ignore[call-overload]

        tls_seconds = tls_baseline(pki, arrays)

    mb = size / 1e6
    ours = 2 * mb / (down + up)
    limit = 2 * mb / tls_seconds
    budget = 2 * size + 200e6
    print(f"model {args.size_mib} MiB in {args.tensors} tensors, chunks of {args.chunk_mib} MiB")
    print(f"cores {os.cpu_count()}; load average 1/5/15 min at start "
          f"{' '.join(f'{v:.2f}' for v in load_start)}, at end "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")  # fmt: skip
    print(f"ours  download (aggregator -> collaborator): {mb / down:8.0f} MB/s")
    print(f"ours  upload   (collaborator -> aggregator): {mb / up:8.0f} MB/s")
    print(f"ours  both ways:                              {ours:8.0f} MB/s")
    print(f"plain TLS socket pair, same bytes both ways: {limit:8.0f} MB/s")
    print(f"ratio ours / plain TLS:                      {ours / limit:8.2f}   (target >= 0.8)")
    print(f"peak RSS aggregator process:  {server_rss / 1e6:8.0f} MB   "
          f"(budget {budget / 1e6:.0f} MB)")  # fmt: skip
    print(f"peak RSS collaborator process:{client_rss / 1e6:8.0f} MB   "
          f"(budget {budget / 1e6:.0f} MB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    raise SystemExit(main())
