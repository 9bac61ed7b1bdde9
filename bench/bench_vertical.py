"""What the vertical communicator costs per step and per byte, against this machine's own floor.

    .venv/bin/python bench/bench_vertical.py            # 2000 steps, a 64 MiB tensor 3 times

A leader and a follower ``Communicator`` in two processes, mutual TLS with ``party``
certificates of a fresh CA, over loopback:

- **per-step round trip**: the follower sends a 32x64 float32 activation ("embedding"), the
  leader receives it and sends back a gradient of the same shape; timed at the follower from
  its send to its received gradient. The floor is the same two 8 KiB messages bounced over a
  plain TLS socket pair (Python's ssl, the same certificates), in the same run.
- **throughput**: a 64 MiB float32 tensor from the leader to the follower (streamed in chunks),
  timed from send to the follower's recv returning, against 64 MiB over the plain TLS socket.

Where the step time goes, in the same run: the communicator alone over the in-memory link (its
bookkeeping: inbox, pending ops, step matching; no network), and two plain grpc servers over the
same mutual TLS whose handler only queues the bytes (grpc's own floor for the exchange). The
transport alone is ``bench_vertical_transport.py``.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_vertical_transport import grpc_floor, tls_socket_throughput

from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.transport.credentials import TlsFiles
from openfl_like.vertical import Communicator
from openfl_like.vertical.memory_link import memory_pair

STEPS = 2000
WARMUP = 100
BIG_BYTES = 64 * 1024 * 1024
BIG_REPEATS = 3
SHAPE = (32, 64)
SESSION = "bench-vertical"


def _comm(role: str, pki: Path, my_port: int, peer_port: int) -> Communicator:
    me, peer = ("shop", "bank") if role == "leader" else ("bank", "shop")
    return Communicator(role, f"localhost:{peer_port}", f"127.0.0.1:{my_port}", name=me,
                        peer_name=peer, session_id=SESSION, pki_dir=pki,
                        default_timeout_ms=60_000)


def _leader(pki: Path, ports: tuple[int, int]) -> None:
    comm = _comm("leader", pki, ports[0], ports[1])
    comm.initialize()
    gradient = np.full(SHAPE, 0.5, dtype=np.float32)
    for _ in range(WARMUP + STEPS):
        comm.recv("embedding", np.float32)
        comm.send("gradient", gradient)
        comm.add_step()
    big = np.ones(BIG_BYTES // 4, dtype=np.float32)
    for _ in range(BIG_REPEATS):
        comm.recv("go", np.int64)
        comm.send("big", big)
        comm.add_step()
    comm.recv("done", np.int64)
    comm.shutdown()


def _follower(pki: Path, ports: tuple[int, int], out: mp.Queue) -> None:
    comm = _comm("follower", pki, ports[1], ports[0])
    comm.initialize()
    embedding = np.full(SHAPE, 0.25, dtype=np.float32)
    times = []
    for step in range(WARMUP + STEPS):
        started = time.perf_counter()
        comm.send("embedding", embedding)
        comm.recv("gradient", np.float32)
        if step >= WARMUP:
            times.append(time.perf_counter() - started)
        comm.add_step()
    big_times = []
    for _ in range(BIG_REPEATS):
        started = time.perf_counter()
        comm.send("go", np.zeros(1, np.int64))
        array = comm.recv("big", np.float32)
        big_times.append(time.perf_counter() - started)
        assert array.nbytes == BIG_BYTES
        comm.add_step()
    comm.send("done", np.zeros(1, np.int64))
    comm.shutdown()
    out.put((times, big_times))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tls_pair(files: TlsFiles) -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """A connected TLS client/server pair over loopback with our certificates (mutual)."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=files.ca_bundle_path)
    server_ctx.load_cert_chain(files.cert_path, files.key_path)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=files.ca_bundle_path)
    client_ctx.load_cert_chain(files.cert_path, files.key_path)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[ssl.SSLSocket] = []

    def accept() -> None:
        conn, _ = listener.accept()
        accepted.append(server_ctx.wrap_socket(conn, server_side=True))

    thread = threading.Thread(target=accept)
    thread.start()
    client = client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                                    server_hostname="localhost")
    thread.join()
    listener.close()
    for sock in (client, accepted[0]):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, accepted[0]


def _recv_exactly(sock: ssl.SSLSocket, size: int, buffer: bytearray) -> None:
    view = memoryview(buffer)
    got = 0
    while got < size:
        got += sock.recv_into(view[got:size])


def _tls_floor(files: TlsFiles) -> list[float]:
    """Plain TLS socket: the same 8 KiB each way per step, echoed by a thread."""
    client, server = _tls_pair(files)
    small = np.full(SHAPE, 0.25, np.float32).tobytes()
    buffer = bytearray(len(small))

    def echo() -> None:
        echo_buffer = bytearray(len(small))
        for _ in range(WARMUP + STEPS):
            _recv_exactly(server, len(small), echo_buffer)
            server.sendall(echo_buffer)

    thread = threading.Thread(target=echo)
    thread.start()
    times = []
    for step in range(WARMUP + STEPS):
        started = time.perf_counter()
        client.sendall(small)
        _recv_exactly(client, len(small), buffer)
        if step >= WARMUP:
            times.append(time.perf_counter() - started)
    thread.join()
    client.close()
    server.close()
    return times


def _in_memory_steps() -> list[float]:
    """The communicator's own cost per step: both parties in this process, no network."""
    lead_end, follow_end = memory_pair(("shop", "bank"))
    leader = Communicator.over_link("leader", lead_end, name="shop", peer_name="bank")
    follower = Communicator.over_link("follower", follow_end, name="bank", peer_name="shop")
    starting = threading.Thread(target=follower.initialize)
    starting.start()
    leader.initialize()
    starting.join()
    embedding = np.full(SHAPE, 0.25, np.float32)

    def lead() -> None:
        for _ in range(WARMUP + STEPS):
            leader.send("gradient", -leader.recv("embedding", np.float32))
            leader.add_step()

    thread = threading.Thread(target=lead)
    thread.start()
    times = []
    for step in range(WARMUP + STEPS):
        started = time.perf_counter()
        follower.send("embedding", embedding)
        follower.recv("gradient", np.float32)
        if step >= WARMUP:
            times.append(time.perf_counter() - started)
        follower.add_step()
    thread.join()
    leader.shutdown()
    follower.shutdown()
    return times


def _quantiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[int(0.99 * (len(ordered) - 1))]


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-vertical-"))
    store = PkiStore(tmp / "pki")
    ca = CertificateAuthority.init(store)
    for name in ("shop", "bank"):
        ca.certify(name, Role.PARTY, ["localhost", "127.0.0.1"])
    ports = (_free_port(), _free_port())
    context = mp.get_context("spawn")
    out: mp.Queue = context.Queue()
    leader = context.Process(target=_leader, args=(store.root, ports))
    follower = context.Process(target=_follower, args=(store.root, ports, out))
    leader.start()
    follower.start()
    times, big_times = out.get(timeout=600)
    leader.join(60)
    follower.join(60)
    floor_times = _tls_floor(TlsFiles.for_participant(store, "shop"))
    grpc_times = [ms / 1e3 for ms in grpc_floor(store, np.zeros(SHAPE, np.float32).tobytes(),
                                                STEPS)]
    memory_times = _in_memory_steps()
    floor_big = min(tls_socket_throughput(store, BIG_BYTES) for _ in range(BIG_REPEATS))

    median, p99 = _quantiles(times)
    print(f"per-step round trip, 32x64 float32 each way ({STEPS} steps; leader and follower in "
          f"two processes, mutual TLS):")
    print(f"  communicator              median {median * 1e3:.3f} ms   p99 {p99 * 1e3:.3f} ms"
          f"   target well under 2 ms (<= 1 ms): {'met' if median <= 1e-3 else 'MISSED'}")
    for label, floor in (("plain grpc, same TLS", grpc_times), ("plain TLS socket", floor_times),
                         ("communicator, in-memory", memory_times)):
        floor_median, floor_p99 = _quantiles(floor)
        print(f"  {label:<25} median {floor_median * 1e3:.3f} ms   p99 {floor_p99 * 1e3:.3f} ms"
              f"   (communicator = {median / floor_median:.1f}x)")
    best = min(big_times)
    mib = BIG_BYTES / 2**20
    print(f"throughput, one {mib:.0f} MiB float32 tensor leader -> follower (best of "
          f"{BIG_REPEATS}):")
    print(f"  communicator              {best:.3f} s   {mib / best:.0f} MiB/s")
    print(f"  plain TLS socket          {floor_big:.3f} s   {mib / floor_big:.0f} MiB/s")
    print(f"  ratio                     {floor_big / best:.2f}x the TLS socket's rate")


if __name__ == "__main__":
    main()
