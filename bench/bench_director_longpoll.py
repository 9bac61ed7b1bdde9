"""The director's memory and CPU holding N envoys in WaitExperiment long-polls.

    .venv/bin/python bench/bench_director_longpoll.py              # N = 100, 500, 1000
    .venv/bin/python bench/bench_director_longpoll.py --n 300 --workers 256 --heartbeat-seconds 0

For each N, a fresh server process (so its RSS is its own) runs the real ``Director`` (SQLite
registry in a temp workspace) behind a real ``DirectorGRPCServer`` with mutual TLS on 127.0.0.1,
composed as ``app.director.start_director`` does; certificates come from our PKI in a temp dir.
A client child process opens one grpc.aio channel per envoy with that envoy's own certificate -
one TLS connection each, as N envoy processes would - registers every envoy at once
(UpdateShardInfo with a digits contract; each is one durable SQLite transaction), then parks N
WaitExperiment calls. While they are parked we measure the server's RSS, threads and CPU use
(the cost of holding them), and the latency of an experimenter's GetEnvoys (the listing of all N
envoys) over a fresh connection: does the director still answer others? Then
``director.broadcast(NOTICE)`` wakes every parked call and the child reports when the last of
the N replies, each of which must carry the notice, arrived (CLOCK_MONOTONIC is system-wide).

Between the two, a heartbeat phase (``--heartbeat-seconds``, default the director's own 5 s; 0
skips it): for one period every envoy sends its UpdateEnvoyStatus, spread evenly (N / period per
second), on the channel its poll is parked on - the steady load of N connected envoys. Each
heartbeat is one durable (``synchronous=FULL``) SQLite write under the registry's lock; we report
the server's CPU, the heartbeats' latency and the GetEnvoys probe's latency during that phase.

The sync grpc server holds one worker thread per parked call (``server_workers``, default 1280);
with fewer workers than envoys the rest queue inside grpc, and so does every other call: the
probe fails (``--n 300 --workers 256`` shows it). So a director holds at most about
``server_workers`` envoys, and a director.yaml cannot raise it (its ``network`` keys have no
server_workers): only ``FX_SERVER_WORKERS`` in the director's environment can.

Measured on 2 cores (load average ~2.5 from other work), N = 1000: ~136 KB RSS and one thread
per parked envoy (216 MB in all), CPU 0.2 % while they wait, GetEnvoys 62 ms (480 KB of JSON),
200 heartbeats/s at 32 % CPU with p50 2 ms, the notice delivered to all 1000 in 0.5 s.
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
import time
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from openfl_like.app.settings import transport_mapping
from openfl_like.core.experiments import BroadcastKind
from openfl_like.core.ids import Role
from openfl_like.director.director import Director
from openfl_like.pki import CertificateAuthority, PkiStore
from openfl_like.plan.contract import contract_to_dict
from openfl_like.plan.director_config import DirectorConfig, DirectorSettings
from openfl_like.plan.schema import DataContract
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.director_client import DirectorClient
from openfl_like.transport.director_server import DirectorGRPCServer
from openfl_like.transport.settings import RetrySettings, TransportSettings

DIRECTOR = "director"
FEDERATION = "bench-director"
PROBE = "probe-experimenter"
POLL_SECONDS = 300.0  # longer than any run: every poll stays parked until the broadcast
NOTICE = "bench notice: please ignore"
DIGITS = DataContract(features=(64,), classes=tuple(str(i) for i in range(10)))


def envoy(i: int) -> str:
    return f"envoy-{i:04d}"


# -- measurements of this (the server's) process ---------------------------------------------


def proc_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def probe_envoys(port: int, store: PkiStore) -> tuple[str, int, int]:
    """GetEnvoys over a fresh connection (TLS handshake included): (latency, envoys listed
    online, size of the listing as compact JSON)."""
    settings = TransportSettings(rpc_timeout_seconds=10.0,
                                 retry=RetrySettings(initial_backoff_seconds=0.2,
                                                     total_seconds=1.0))  # fmt: skip
    client = DirectorClient(host="127.0.0.1", port=port, name=PROBE, director_name=DIRECTOR,
                            federation_uuid=FEDERATION,
                            tls_files=TlsFiles.for_participant(store, PROBE),
                            settings=settings)  # fmt: skip
    started = time.monotonic()
    try:
        with client:
            listing = client.envoys()
    except Exception as exc:  # the figure is "it failed, and how"
        return f"FAILED after {time.monotonic() - started:.1f}s ({type(exc).__name__})", 0, 0
    online = sum(1 for e in listing["envoys"] if e["online"])
    size = len(json.dumps(listing, separators=(",", ":")))
    return f"{(time.monotonic() - started) * 1000:.0f} ms", online, size


@dataclass
class Row:
    n: int
    workers: int
    connect_seconds: float
    register_seconds: float
    register_errors: str
    parked: int
    park_seconds: float
    rss_idle_mb: float
    rss_parked_mb: float
    threads: int
    cpu_percent: float
    probe: str
    probe_listed: int
    probe_kb: float
    hb_rate: float
    hb_p50_ms: float
    hb_p99_ms: float
    hb_errors: str
    hb_cpu_percent: float
    hb_probe: str
    release_seconds: float
    replies: int
    with_notice: int
    errors: str


def _errors(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in counts.items()) or "none"


def run_one(n: int, workers: int | None, heartbeat: float, store: PkiStore,
            workspace: Path) -> Row:
    config = DirectorConfig(
        director=DirectorSettings(name=DIRECTOR, federation=FEDERATION, workspace=workspace,
                                  heartbeat_seconds=3600.0, broadcast_ttl_seconds=600.0),
        network=MappingProxyType({"tls": True, "long_poll_seconds": POLL_SECONDS}),
    )  # fmt: skip
    # as app.director.start_director composes it (FX_* overrides apply), plus --workers
    settings = TransportSettings.from_mapping(transport_mapping(config.network))
    if workers is not None:
        settings = dataclasses.replace(settings, server_workers=workers)
    director = Director(config, pki_dir=Path(store.root))
    servicer = DirectorGRPCServer(
        director, director_name=DIRECTOR, federation_uuid=FEDERATION,
        tls_files=TlsFiles.for_participant(store, DIRECTOR), settings=settings,
    )  # fmt: skip
    running = servicer.start(host="127.0.0.1", port=0)
    director.start()
    probe_envoys(running.port, store)  # idle RSS with grpc, TLS and the registry warmed up
    rss_idle = proc_status("VmRSS") / 1024
    child = subprocess.Popen(
        [sys.executable, __file__, "--client", "--port", str(running.port),
         "--pki", str(store.root), "--n", str(n), "--heartbeat-seconds", str(heartbeat)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdin is not None
        registered = json.loads(child.stdout.readline())
        json.loads(child.stdout.readline())  # {"sent": n}: every WaitExperiment is issued
        started = time.monotonic()
        # parked: all N hold a poll slot (inside the director), or no change for 3 s
        last, stable_since = -1, time.monotonic()
        while servicer.polls.in_use() < n and time.monotonic() - stable_since < 3.0:
            if servicer.polls.in_use() != last:
                last, stable_since = servicer.polls.in_use(), time.monotonic()
            time.sleep(0.05)
        park_seconds = time.monotonic() - started
        time.sleep(1.0)
        cpu0, wall0 = cpu_seconds(), time.monotonic()
        time.sleep(5.0)
        cpu_percent = 100 * (cpu_seconds() - cpu0) / (time.monotonic() - wall0)
        rss_parked = proc_status("VmRSS") / 1024
        threads = proc_status("Threads")
        parked = servicer.polls.in_use()
        probe, listed, size = probe_envoys(running.port, store)

        hb: dict = {"rate": 0.0, "p50_ms": 0.0, "p99_ms": 0.0, "errors": {}}
        hb_cpu, hb_probe = 0.0, "-"
        if heartbeat > 0:
            cpu0, wall0 = cpu_seconds(), time.monotonic()
            child.stdin.write("heartbeat\n")
            child.stdin.flush()
            time.sleep(heartbeat / 2)
            hb_probe, _, _ = probe_envoys(running.port, store)
            hb = json.loads(child.stdout.readline())
            hb_cpu = 100 * (cpu_seconds() - cpu0) / (time.monotonic() - wall0)

        released_at = time.monotonic()
        director.broadcast(BroadcastKind.NOTICE, NOTICE)
        report = json.loads(child.stdout.readline())
        child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        running.stop(1.0)
        director.stop(grace=1.0)
    return Row(
        n=n, workers=settings.server_workers, connect_seconds=registered["connect"],
        register_seconds=registered["seconds"],
        register_errors=_errors(registered["errors"]), parked=parked, park_seconds=park_seconds,
        rss_idle_mb=rss_idle, rss_parked_mb=rss_parked, threads=threads,
        cpu_percent=cpu_percent, probe=probe, probe_listed=listed,
        probe_kb=size / 1024, hb_rate=hb["rate"],
        hb_p50_ms=hb["p50_ms"], hb_p99_ms=hb["p99_ms"], hb_errors=_errors(hb["errors"]),
        hb_cpu_percent=hb_cpu, hb_probe=hb_probe,
        release_seconds=report["last"] - released_at, replies=report["replies"],
        with_notice=report["with_notice"], errors=_errors(report["errors"]),
    )  # fmt: skip


# -- the client process: N envoys, one grpc.aio channel (TLS connection) each -----------------


async def register_and_park(port: int, store: PkiStore, n: int,
                            heartbeat: float) -> dict[str, object]:
    import grpc

    from openfl_like.protocol import base_pb2
    from openfl_like.protocol import director_pb2 as pb
    from openfl_like.protocol.director_convert import to_json
    from openfl_like.protocol.director_service import DIRECTOR_RPCS
    from openfl_like.transport.credentials import channel_credentials

    def stub(channel: grpc.aio.Channel, name: str) -> grpc.aio.UnaryUnaryMultiCallable:
        rpc = DIRECTOR_RPCS[name]
        return channel.unary_unary(rpc.path, request_serializer=rpc.serialize_request,
                                   response_deserializer=rpc.deserialize_response)  # fmt: skip

    shard = pb.ShardInfo(contract_json=to_json(contract_to_dict(DIGITS)),
                         sample_counts={"train": 1200, "valid": 300},
                         description="bench digits shard")  # fmt: skip
    channels, headers = [], []
    for i in range(n):
        channels.append(grpc.aio.secure_channel(
            f"127.0.0.1:{port}", channel_credentials(TlsFiles.for_participant(store, envoy(i))),
            options=[("grpc.use_local_subchannel_pool", 1)],
        ))  # fmt: skip
        headers.append(base_pb2.MessageHeader(sender=envoy(i), receiver=DIRECTOR,
                                              federation_uuid=FEDERATION))  # fmt: skip

    errors: dict[str, int] = {}

    def count(exc: grpc.aio.AioRpcError) -> None:
        errors[exc.code().name] = errors.get(exc.code().name, 0) + 1

    async def register(i: int) -> None:
        request = pb.UpdateShardInfoRequest(header=headers[i], shard=shard)
        try:
            await stub(channels[i], "UpdateShardInfo")(request, timeout=120)
        except grpc.aio.AioRpcError as exc:
            count(exc)

    started = time.monotonic()  # N TLS connections at once, as N envoys starting would
    await asyncio.gather(*(channel.channel_ready() for channel in channels))
    connected = time.monotonic()
    await asyncio.gather(*(register(i) for i in range(n)))
    print(json.dumps({"connect": connected - started, "seconds": time.monotonic() - connected,
                      "errors": errors}), flush=True)  # fmt: skip

    errors = {}
    calls = [stub(channels[i], "WaitExperiment")(
        pb.WaitExperimentRequest(header=headers[i], wait_seconds=POLL_SECONDS),
        timeout=POLL_SECONDS + 30) for i in range(n)]  # fmt: skip
    print(json.dumps({"sent": n}), flush=True)

    arrivals: list[float] = []
    replies = with_notice = 0
    hb_errors: dict[str, int] = {}
    latencies: list[float] = []

    async def beat(i: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        request = pb.UpdateEnvoyStatusRequest(header=headers[i])
        sent = time.monotonic()
        try:
            await stub(channels[i], "UpdateEnvoyStatus")(request, timeout=60)
            latencies.append(time.monotonic() - sent)
        except grpc.aio.AioRpcError as exc:
            hb_errors[exc.code().name] = hb_errors.get(exc.code().name, 0) + 1

    async def one(call: object) -> None:
        nonlocal replies, with_notice
        try:
            reply = await call  # type: ignore[misc]
            replies += 1
            with_notice += any(m.text == NOTICE and m.kind == BroadcastKind.NOTICE.value
                               for m in reply.messages)  # fmt: skip
        except grpc.aio.AioRpcError as exc:
            count(exc)
        arrivals.append(time.monotonic())

    waiting = [asyncio.ensure_future(one(c)) for c in calls]
    if heartbeat > 0:  # one period of every envoy's heartbeat, spread evenly, when told
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        started = time.monotonic()
        await asyncio.gather(*(beat(i, started + i * heartbeat / n) for i in range(n)))
        latencies.sort()
        print(json.dumps({
            "rate": len(latencies) / (time.monotonic() - started),
            "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
            "errors": hb_errors}), flush=True)  # fmt: skip
    await asyncio.gather(*waiting)
    for channel in channels:
        await channel.close()
    return {"last": max(arrivals), "replies": replies, "with_notice": with_notice,
            "errors": errors}  # fmt: skip


def client_main(port: int, pki: Path, n: int, heartbeat: float) -> None:
    report = asyncio.run(register_and_park(port, PkiStore(pki), n, heartbeat))
    print(json.dumps(report), flush=True)


# -- main ---------------------------------------------------------------------------------------


def make_pki(root: Path, n: int) -> PkiStore:
    store = PkiStore(root)
    ca = CertificateAuthority.init(store)
    ca.certify(DIRECTOR, Role.DIRECTOR, sans=["localhost", "127.0.0.1"])
    ca.certify(PROBE, Role.EXPERIMENTER)
    for i in range(n):
        ca.certify(envoy(i), Role.ENVOY)
    return store


def print_row(row: Row) -> None:
    print(f"{row.n:>5} {row.workers:>7} {row.n / row.connect_seconds:>6.0f}/s "
          f"{row.n / row.register_seconds:>7.0f}/s "
          f"{row.parked:>6} {row.park_seconds:>6.1f} {row.rss_idle_mb:>6.0f}MB "
          f"{row.rss_parked_mb:>8.0f}MB {row.threads:>7} {row.cpu_percent:>5.1f} "
          f"{row.probe:>10} {row.probe_listed:>6} {row.probe_kb:>5.0f} | {row.hb_rate:>6.0f}/s "
          f"{row.hb_p50_ms:>5.0f}/{row.hb_p99_ms:<5.0f} {row.hb_cpu_percent:>5.1f} "
          f"{row.hb_probe:>10} | {row.release_seconds:>9.3f} "
          f"{row.with_notice:>6}/{row.replies:<6} {_join(row.hb_errors, row.errors)}",
          flush=True)  # fmt: skip


def _join(heartbeat_errors: str, errors: str) -> str:
    if heartbeat_errors == "none":
        return errors
    return f"heartbeats: {heartbeat_errors}; polls: {errors}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--workers", type=int, default=None,
                        help="server_workers (default: TransportSettings' own)")
    parser.add_argument("--heartbeat-seconds", type=float,
                        default=DirectorSettings().heartbeat_seconds,
                        help="envoy heartbeat period of the heartbeat phase (0: skip it)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pki", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args.port, args.pki, args.n[0], args.heartbeat_seconds)
        return
    if args.server:  # one N in a fresh process, so RSS figures are its own
        row = run_one(args.n[0], args.workers, args.heartbeat_seconds, PkiStore(args.pki),
                      args.workspace)
        print(json.dumps(dataclasses.asdict(row)), flush=True)
        return

    print(f"cores {os.cpu_count()}, load average {os.getloadavg()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-director-") as tmp:
        started = time.monotonic()
        store = make_pki(Path(tmp) / "pki", max(args.n))
        print(f"PKI with {max(args.n) + 2} certificates in {time.monotonic() - started:.1f}s")
        print(f"{'N':>5} {'workers':>7} {'TLS conn':>8} {'register':>9} {'parked':>6} "
              f"{'park s':>6} "
              f"{'RSS idle':>8} {'RSS parked':>10} {'threads':>7} {'CPU %':>5} "
              f"{'GetEnvoys':>10} {'listed':>6} {'KB':>5} | {'hb rate':>8} {'hb p50/p99':>11} "
              f"{'CPU %':>5} {'GetEnvoys':>10} | {'release s':>9} {'notice/replies':>13}  "
              f"errors")  # fmt: skip
        for n in args.n:
            command = [sys.executable, __file__, "--server", "--pki", str(store.root),
                       "--n", str(n), "--workspace", str(Path(tmp) / f"workspace-{n}"),
                       "--heartbeat-seconds", str(args.heartbeat_seconds)]
            if args.workers is not None:
                command += ["--workers", str(args.workers)]
            out = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True,
                                 timeout=600)  # fmt: skip
            row = Row(**json.loads(out.stdout.splitlines()[-1]))
            rows.append(row)
            print_row(row)
            if row.register_errors != "none":
                print(f"      registration errors: {row.register_errors}")
    print("per envoy: director RSS while parked (above idle) and release time per 1000 envoys")
    for row in rows:
        per_envoy_kb = (row.rss_parked_mb - row.rss_idle_mb) * 1024 / max(1, row.parked)
        print(f"{row.n:>5}: {per_envoy_kb:>6.0f} KB per parked envoy, "
              f"{row.release_seconds * 1000 / row.n:.3f} s per 1000 envoys released, "
              f"{row.connect_seconds * 1000 / row.n:.1f} ms per TLS connection and "
              f"{row.register_seconds * 1000 / row.n:.1f} ms per registration, "
              f"N at once")  # fmt: skip
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
