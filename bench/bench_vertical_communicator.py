"""Vertical Communicator per-step round trip, with its bookkeeping (inbox, monitor registry,
step matching), over the in-memory link and over mutual TLS.

    .venv/bin/python bench/bench_vertical_communicator.py              # 2000 steps
    .venv/bin/python bench/bench_vertical_communicator.py --steps 5000

Both parties in this process on 127.0.0.1, certificates from our PKI (in a temp dir). One step,
as in the vertical demo: the leader sends a 32x64 float32 activation, the follower receives it
and sends back a 32x64 float32 gradient, the leader receives it, both ``add_step()``. The
in-memory figure is the communicator's own cost (no network, no serialisation); the mutual-TLS
figure minus ``bench_vertical_transport.py``'s is what the communicator adds to the transport
(target for the whole step: well under 2 ms on loopback).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from openfl_like.app.local_run import free_port
from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.vertical import Communicator
from openfl_like.vertical.memory_link import memory_pair


def _start(leader: Communicator, follower: Communicator) -> None:
    thread = threading.Thread(target=follower.initialize)
    thread.start()
    leader.initialize()
    thread.join()


def _steps(leader: Communicator, follower: Communicator, steps: int) -> list[float]:
    activation = np.random.default_rng(0).normal(size=(32, 64)).astype(np.float32)

    def follow() -> None:
        for _ in range(steps):
            follower.send("gradient", -follower.recv("activation", dtype=np.float32))
            follower.add_step()

    thread = threading.Thread(target=follow)
    thread.start()
    took = []
    for _ in range(steps):
        started = time.perf_counter()
        leader.send("activation", activation)
        leader.recv("gradient", dtype=np.float32)
        took.append(time.perf_counter() - started)
        leader.add_step()
    thread.join()
    return took


def _report(label: str, took: list[float]) -> None:
    ms = sorted(t * 1000 for t in took)
    print(f"{label}: median {statistics.median(ms):.3f} ms, p90 {ms[int(len(ms) * 0.9)]:.3f} ms, "
          f"p99 {ms[int(len(ms) * 0.99)]:.3f} ms over {len(ms)} steps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()

    lead_end, follow_end = memory_pair(("shop", "bank"))
    leader = Communicator.over_link("leader", lead_end, name="shop", peer_name="bank")
    follower = Communicator.over_link("follower", follow_end, name="bank", peer_name="shop")
    _start(leader, follower)
    _steps(leader, follower, 100)  # warm-up
    _report("in-memory link", _steps(leader, follower, args.steps))
    leader.shutdown()
    follower.shutdown()

    with tempfile.TemporaryDirectory() as folder:
        ca = CertificateAuthority.init(PkiStore(Path(folder)))
        for name in ("shop", "bank"):
            ca.certify(name, Role.PARTY, ["localhost", "127.0.0.1"])
        shop_port, bank_port = free_port(), free_port()
        leader = Communicator("leader", f"127.0.0.1:{bank_port}", f"127.0.0.1:{shop_port}",
                              name="shop", peer_name="bank", pki_dir=Path(folder))
        follower = Communicator("follower", f"127.0.0.1:{shop_port}",
                                f"127.0.0.1:{bank_port}", name="bank", peer_name="shop",
                                pki_dir=Path(folder))
        _start(leader, follower)
        _steps(leader, follower, 100)
        _report("mutual TLS, 127.0.0.1", _steps(leader, follower, args.steps))
        leader.shutdown()
        follower.shutdown()


if __name__ == "__main__":
    main()
