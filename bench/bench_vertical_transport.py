"""Vertical transport alone (no communicator): per-step round trip and large-tensor throughput.

    .venv/bin/python bench/bench_vertical_transport.py              # 2000 steps, 64 MiB
    .venv/bin/python bench/bench_vertical_transport.py --steps 5000 --mib 256

Two parties in this process, each a ``VerticalPeerServer`` + ``VerticalPeerClient`` over mutual
TLS with certificates from our PKI (in a temp dir), on 127.0.0.1. One step: the leader sends a
32x64 float32 activation and waits for the follower's ack; the follower's inbox hands it to the
follower's thread, which sends back a 32x64 float32 gradient; the leader's thread takes it from
its inbox. That is the communicator's per-step round trip without its own bookkeeping (target:
well under 2 ms). Then one ``--mib`` MiB tensor, streamed in 4 MiB pieces, against a plain TLS
socket pair moving the same bytes in the same run.
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
from pathlib import Path

import numpy as np

from openfl_like.core.ids import Role
from openfl_like.core.vertical import Control, Hello, PartyRole, StepTensor
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.transport.credentials import TlsFiles
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


def party(store: PkiStore, me: str, peer: str, role: PartyRole):
    inbox = Inbox()
    server = VerticalPeerServer(inbox, me=me, peer=peer, session_id=SESSION, my_role=role,
                                tls_files=TlsFiles.for_participant(store, me))
    return inbox, server.start("127.0.0.1", 0)


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
        stop = threading.Event()

        def follower() -> None:
            while not stop.is_set():
                try:
                    got = follower_inbox.tensors.get(timeout=0.1)
                except queue.Empty:
                    continue
                to_leader.send_tensor("gradient", got.step, got.array * 0.5, 5.0).result()

        thread = threading.Thread(target=follower, daemon=True)
        thread.start()
        times = []
        for step in range(args.steps + 200):
            started = time.perf_counter()
            to_follower.send_tensor("activation", step, activation, 5.0).result()
            leader_inbox.tensors.get(timeout=5)
            if step >= 200:  # warm-up: connections, thread pools
                times.append(time.perf_counter() - started)
        stop.set()
        thread.join()
        ms = sorted(t * 1000 for t in times)
        print(f"step round trip, 32x64 float32 each way, {len(ms)} steps: "
              f"median {statistics.median(ms):.3f} ms, p90 {ms[int(len(ms) * 0.9)]:.3f} ms, "
              f"p99 {ms[int(len(ms) * 0.99)]:.3f} ms")

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
