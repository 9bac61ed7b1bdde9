"""Vertical transport alone (no communicator): per-step round trip and large-tensor throughput.

    .venv/bin/python bench/bench_vertical_transport.py              # 2000 steps, 64 MiB
    .venv/bin/python bench/bench_vertical_transport.py --steps 5000 --mib 256

Two parties in this process, each a ``VerticalPeerServer`` + ``VerticalPeerClient`` over mutual
TLS with certificates from our PKI (in a temp dir), on 127.0.0.1. One step: the leader sends a
32x64 float32 activation and waits for the follower's ack; the follower's inbox hands it to the
follower's thread, which sends back a 32x64 float32 gradient; the leader's thread takes it from
its inbox. That is the communicator's per-step round trip without its own bookkeeping (target:
well under 2 ms). The floor, in the same run: the same exchange between two plain grpc servers
whose handler only queues the request bytes (same TLS, same threads; no checks, no decoding).
Then one ``--mib`` MiB tensor, streamed in 4 MiB pieces, against a plain TLS socket pair moving
the same bytes in the same run.
"""

from __future__ import annotations

import argparse
import queue
import socket
import ssl
import statistics
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np

from openfl_like.core.ids import Role
from openfl_like.core.vertical import Control, Hello, PartyRole, StepTensor
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.transport.credentials import TlsFiles, channel_credentials, server_credentials
from openfl_like.transport.vertical_client import VerticalPeerClient
from openfl_like.transport.vertical_server import VerticalPeerServer

SESSION = "bench"


class Inbox:
    def __init__(self) -> None:
        self.tensors: queue.SimpleQueue[StepTensor] = queue.SimpleQueue()

    def on_connect(self, hello: Hello) -> None:
        pass

    def on_tensor(self, tensor: StepTensor) -> None:
        self.tensors.put(tensor)

    def on_control(self, control: Control) -> None:
        pass

    def on_refused(self, error: Exception) -> None:
        pass


def party(store: PkiStore, me: str, peer: str, role: PartyRole):
    inbox = Inbox()
    server = VerticalPeerServer(inbox, me=me, peer=peer, session_id=SESSION, my_role=role,
                                tls_files=TlsFiles.for_participant(store, me))
    return inbox, server.start("127.0.0.1", 0)


def exchange(send_to_follower, send_to_leader, leader_q, follower_q, steps: int) -> list[float]:
    """Step round trips in ms: leader sends, follower answers from its own thread."""
    stop = threading.Event()

    def follower() -> None:
        while not stop.is_set():
            try:
                got = follower_q.get(timeout=0.1)
            except queue.Empty:
                continue
            send_to_leader(got)

    thread = threading.Thread(target=follower, daemon=True)
    thread.start()
    times = []
    for step in range(steps + 200):
        started = time.perf_counter()
        send_to_follower(step)
        leader_q.get(timeout=5)
        if step >= 200:  # warm-up: connections, thread pools
            times.append((time.perf_counter() - started) * 1000)
    stop.set()
    thread.join()
    return sorted(times)


def summary(ms: list[float]) -> str:
    return (f"median {statistics.median(ms):.3f} ms, p90 {ms[int(len(ms) * 0.9)]:.3f} ms, "
            f"p99 {ms[int(len(ms) * 0.99)]:.3f} ms")


def grpc_floor(store: PkiStore, payload: bytes, steps: int) -> list[float]:
    """The same exchange between plain grpc servers that only queue the request bytes."""
    servers, queues, ports = [], [], []
    for name in ("shop", "bank"):
        inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        server = grpc.server(futures.ThreadPoolExecutor(4))

        def put(raw: bytes, _context: object, inbox: queue.SimpleQueue[bytes] = inbox) -> bytes:
            inbox.put(raw)
            return b""

        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "floor", {"Put": grpc.unary_unary_rpc_method_handler(put)})])
        ports.append(server.add_secure_port(
            "127.0.0.1:0", server_credentials(TlsFiles.for_participant(store, name))))
        server.start()
        servers.append(server)
        queues.append(inbox)
    callers = ("bank", "shop")  # the follower calls the leader's server, and back
    channels = [grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(
        TlsFiles.for_participant(store, caller))) for port, caller in zip(ports, callers,
                                                                          strict=True)]
    to_leader, to_follower = (c.unary_unary("/floor/Put") for c in channels)
    try:
        return exchange(lambda _step: to_follower(payload, timeout=5),
                        lambda got: to_leader(got, timeout=5), queues[0], queues[1], steps)
    finally:
        for channel in channels:
            channel.close()
        for server in servers:
            server.stop(0)


def tls_socket_throughput(store: PkiStore, nbytes: int) -> float:
    """Seconds to move ``nbytes`` over one TLS socket (same certificates), receiver reading."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(store.cert_path("bank"), store.key_path("bank"))
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(store.ca_bundle_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = [0]

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            buf = bytearray(4 << 20)
            while received[0] < nbytes:
                n = tls.recv_into(buf)
                if not n:
                    break
                received[0] += n

    thread = threading.Thread(target=serve)
    thread.start()
    payload = memoryview(np.ones(nbytes, np.uint8))
    with socket.create_connection(("127.0.0.1", port)) as raw, \
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        started = time.perf_counter()
        tls.sendall(payload)
        thread.join()
        elapsed = time.perf_counter() - started
    listener.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = PkiStore(Path(tmp))
        ca = CertificateAuthority.init(store)
        for name in ("shop", "bank"):
            ca.certify(name, Role.PARTY, ["localhost", "127.0.0.1"])
        leader_inbox, leader_server = party(store, "shop", "bank", PartyRole.LEADER)
        follower_inbox, follower_server = party(store, "bank", "shop", PartyRole.FOLLOWER)
        to_follower = VerticalPeerClient(
            follower_server.address, me="shop", peer="bank", session_id=SESSION,
            my_role=PartyRole.LEADER, tls_files=TlsFiles.for_participant(store, "shop"))
        to_leader = VerticalPeerClient(
            leader_server.address, me="bank", peer="shop", session_id=SESSION,
            my_role=PartyRole.FOLLOWER, tls_files=TlsFiles.for_participant(store, "bank"))
        activation = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
        ms = exchange(
            lambda step: to_follower.send_tensor("activation", step, activation, 5.0).result(),
            lambda got: to_leader.send_tensor("gradient", got.step, got.array * 0.5, 5.0
                                              ).result(),
            leader_inbox.tensors, follower_inbox.tensors, args.steps)
        print(f"step round trip, 32x64 float32 each way, {len(ms)} steps: {summary(ms)}")
        floor = grpc_floor(store, activation.tobytes(), args.steps)
        print(f"  floor: plain grpc servers that only queue the bytes: {summary(floor)}")

        big = np.ones(args.mib << 20, dtype=np.uint8)
        for _ in range(2):
            started = time.perf_counter()
            to_follower.send_tensor("big", 0, big, 120.0).result()
            grpc_s = time.perf_counter() - started
            follower_inbox.tensors.get(timeout=5)
        tls_s = tls_socket_throughput(store, big.nbytes)
        print(f"{args.mib} MiB tensor: vertical transport {args.mib / grpc_s:.0f} MiB/s "
              f"({grpc_s:.2f} s), plain TLS socket {args.mib / tls_s:.0f} MiB/s ({tls_s:.2f} s)")
        to_follower.close()
        to_leader.close()
        leader_server.stop(0)
        follower_server.stop(0)


if __name__ == "__main__":
    main()
