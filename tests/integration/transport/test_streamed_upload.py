"""A real Aggregator behind the gRPC server: uploads go to its staging file chunk by chunk."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from openfl_like.app.aggregator import _FarewellTracker
from openfl_like.core.messages import NamedTensor, ResultKey, TaskResult
from openfl_like.federation import Aggregator
from openfl_like.plan import plan_digest, plan_fingerprint
from openfl_like.protocol import base_pb2, convert
from openfl_like.protocol.chunking import Chunk, split_tensors
from openfl_like.protocol.service import AGGREGATOR_RPCS
from openfl_like.protocol.wire import Frame
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.aggregator_server import AggregatorGRPCServer
from openfl_like.transport.credentials import channel_credentials
from openfl_like.transport.handlers import StreamingUploads
from tests.unit.federation.harness import declare_all, make_plan

from .conftest import AGGREGATOR, FEDERATION, Pki, fast_settings

Code = grpc.StatusCode
MODEL = {
    "kernel": np.arange(40, dtype=np.float64).reshape(5, 8) / 7,
    "bias": np.zeros(3, dtype=np.float32),
}


def _result() -> TaskResult:
    return TaskResult(ResultKey("col-a", 0, "train"), 10, {"loss": 1.0})


@pytest.fixture
def federation(pki: Pki, tmp_path: Path) -> Iterator[tuple[Aggregator, int, Path]]:
    plan = make_plan(tmp_path, cols=("col-a", "col-b"))
    agg = Aggregator(plan, initial_weights=MODEL, inline_max_bytes=0,  # (file-staged)
                     state_dir=tmp_path / "state", write_outputs=False)
    declare_all(agg, plan)
    servicer = AggregatorGRPCServer(agg, aggregator_name=AGGREGATOR, federation_uuid=FEDERATION,
                                    tls_files=pki.files(AGGREGATOR), settings=fast_settings())
    running = servicer.start(host="127.0.0.1", port=0)
    try:
        yield agg, running.port, tmp_path / "state" / "staging"
    finally:
        running.stop(0)
        agg.stop()


def _staged(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.exists() else []


def test_upload_with_element_splitting_chunks_is_staged_exactly(pki: Pki, federation) -> None:
    agg, port, staging = federation
    # 13-byte chunks split float64 and float32 elements alike
    update = {"kernel": MODEL["kernel"] + 1, "bias": np.array([1, 2, 3], np.float32)}
    client = AggregatorGRPCClient(
        host="127.0.0.1", port=port, collaborator_name="col-a", aggregator_name=AGGREGATOR,
        federation_uuid=FEDERATION, tls_files=pki.files("col-a"),
        settings=fast_settings(chunk_size=13),
    ).connect()
    try:
        assert client.send_local_task_results(_result(), update).accepted
    finally:
        client.disconnect()
    assert agg.status()["results_in"] == 1
    [path] = _staged(staging)
    data = path.read_bytes()
    for name, array in update.items():
        raw = array.tobytes()
        assert data.count(raw) == 1, name  # every tensor's bytes, whole and in place


def _raw_upload(pki: Pki, port: int, chunks: list[Chunk]) -> tuple[Code, str]:
    header = base_pb2.MessageHeader(sender="col-a", receiver=AGGREGATOR,
                                    federation_uuid=FEDERATION)
    rpc = AGGREGATOR_RPCS["SendLocalTaskResults"]

    def frames() -> Iterator[Frame]:
        yield Frame(header=header, result=convert.result_to_pb(_result()))
        for chunk in chunks:
            yield Frame(chunk=chunk)

    with grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(pki.files("col-a"))) as ch:
        call = ch.stream_unary(rpc.path, request_serializer=rpc.serialize_request,
                               response_deserializer=rpc.deserialize_response)
        with pytest.raises(grpc.RpcError) as caught:
            call(frames(), timeout=10)
    return caught.value.code(), caught.value.details()


def _chunks(weights: dict[str, np.ndarray]) -> list[Chunk]:
    return list(split_tensors([NamedTensor(n, a) for n, a in weights.items()], 24))


def test_bad_uploads_are_invalid_argument_and_leave_nothing(pki: Pki, federation) -> None:
    agg, port, staging = federation
    good = _chunks(MODEL)
    nan = {**MODEL, "kernel": MODEL["kernel"].copy()}
    nan["kernel"][4, 7] = np.nan
    cases = {
        "truncated": [*good[:-2], good[-1]],  # kernel loses its last chunk
        "more bytes": [*good[:-1], Chunk(bytes(good[-1].data) + b"\0" * 4, good[-1].meta)],
        "NaN": _chunks(nan),
    }
    for reason, chunks in cases.items():
        code, details = _raw_upload(pki, port, chunks)
        assert code is Code.INVALID_ARGUMENT and reason in details, (reason, details)
        assert agg.status()["results_in"] == 0
        assert _staged(staging) == []


def test_the_aggregator_process_handler_takes_streamed_uploads(federation, tmp_path) -> None:
    # `fx aggregator start` serves the Aggregator through a wrapper: it must keep the capability.
    agg, _, _ = federation
    assert isinstance(agg, StreamingUploads)
    assert isinstance(_FarewellTracker(agg, tmp_path / "farewell.json"), StreamingUploads)


def _client(pki: Pki, port: int, name: str = "col-a") -> AggregatorGRPCClient:
    return AggregatorGRPCClient(
        host="127.0.0.1", port=port, collaborator_name=name, aggregator_name=AGGREGATOR,
        federation_uuid=FEDERATION, tls_files=pki.files(name), settings=fast_settings(),
    ).connect()


def test_a_result_claiming_more_samples_than_declared_is_refused(pki: Pki, federation) -> None:
    # Prepare: col-a declares 50 train and 20 validation samples over the wire.
    agg, port, _ = federation
    plan = agg.plan
    client = _client(pki, port)
    update = {"kernel": MODEL["kernel"] + 1, "bias": MODEL["bias"] + 1}
    try:
        client.handshake(plan_digest(plan), plan_fingerprint(plan), {"train": 50, "valid": 20})
        # Execute: a train result that claims a FedAvg weight of a billion samples
        oversized = TaskResult(ResultKey("col-a", 0, "train"), 10**9, {"loss": 1.0})
        with pytest.raises(Exception) as refused:
            client.send_local_task_results(oversized, update)
        # ... and the honest one beside it
        honest = client.send_local_task_results(
            TaskResult(ResultKey("col-a", 0, "train"), 50, {"loss": 1.0}), update)
    finally:
        client.disconnect()
    # Assert: INVALID_ARGUMENT naming the declaration; nothing counted; the honest one is
    assert getattr(refused.value, "status_code", None) is Code.INVALID_ARGUMENT
    assert "exceeds the 50 train samples col-a declared" in str(refused.value)
    assert honest.accepted and agg.status()["results_in"] == 1
    assert agg.status()["collaborators"]["col-a"]["samples"] == {"train": 50, "valid": 20}


def test_a_different_data_contract_is_refused_over_the_wire(pki: Pki, federation) -> None:
    agg, port, _ = federation
    client = _client(pki, port)
    try:
        with pytest.raises(Exception) as refused:
            client.handshake(plan_digest(agg.plan), plan_fingerprint(agg.plan),
                             {"train": 5, "valid": 5}, contract_digest="0123456789abcdef")
        shake = client.handshake(plan_digest(agg.plan), plan_fingerprint(agg.plan),
                                 {"train": 5, "valid": 5}, contract_digest="")
    finally:
        client.disconnect()
    assert "data contract differs: digest (no contract) here, 0123456789ab at col-a" in str(
        refused.value)
    assert not shake.done


def test_a_parked_poll_is_woken_by_the_close_and_freed_by_grpc_when_abandoned(
        pki: Pki, federation) -> None:
    # Prepare: col-a has delivered round 0 and parks; count the handler's entries.
    agg, port, _ = federation
    calls = {"get_tasks": 0}
    inner = agg.get_tasks

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["get_tasks"] += 1
        return inner(*args, **kwargs)

    agg.get_tasks = counting  # type: ignore[method-assign]
    client_a, client_b = _client(pki, port), _client(pki, port, "col-b")
    update = {"kernel": MODEL["kernel"] + 1, "bias": MODEL["bias"] + 1}
    try:
        for client in (client_a, client_b):
            client.handshake(plan_digest(agg.plan), plan_fingerprint(agg.plan),
                             {"train": 10, "valid": 10})
        for name in ("col-a", "col-b"):
            for task in ("aggregated_model_validation", "locally_tuned_model_validation"):
                agg.send_local_task_results(TaskResult(ResultKey(name, 0, task), 10, {}),
                                            iter([]))
        assert client_a.send_local_task_results(_result(), update).accepted
        # Execute (1): a poll that waits for col-b longer than a 1 s slice (long-polls of this
        # server last 2 s)
        got = {}
        poller = threading.Thread(target=lambda: got.update(reply=client_a.get_tasks(20.0)))
        poller.start()
        time.sleep(1.6)
        before_close = calls["get_tasks"]
        assert client_b.send_local_task_results(
            TaskResult(ResultKey("col-b", 0, "train"), 10, {"loss": 1.0}), update).accepted
        poller.join(10)
        # Assert (1): one entry for the whole wait; woken with round 1's work and its model
        assert before_close == 1
        assert got["reply"].round_number == 1 and got["reply"].model
        # Execute (2): a poll the client abandons after 0.3 s (its deadline)
        for name in ("col-a", "col-b"):
            for task in ("aggregated_model_validation", "train",
                         "locally_tuned_model_validation"):
                tensors = update if task == "train" else {}
                if name == "col-a":
                    assert client_a.send_local_task_results(
                        TaskResult(ResultKey(name, 1, task), 10, {}), tensors).accepted
        seen_parked = []
        watcher = threading.Thread(target=lambda: [
            (seen_parked.append(agg._live.round.parked.get("col-a", 0)), time.sleep(0.02))
            for _ in range(10)])
        watcher.start()
        with pytest.raises(grpc.RpcError) as abandoned:
            client_a._call("GetTasks")(pb_get_tasks(client_a, 20.0), timeout=0.3)
        gave_up = time.monotonic()
        watcher.join()
        while agg._live.round.parked.get("col-a") and time.monotonic() < gave_up + 1.5:
            time.sleep(0.01)
        freed_after = time.monotonic() - gave_up
        # Assert (2): it was parked; grpc's callback freed it long before its 2 s were up
        assert abandoned.value.code() is Code.DEADLINE_EXCEEDED
        assert max(seen_parked) == 1
        assert not agg._live.round.parked.get("col-a") and freed_after < 0.5, freed_after
    finally:
        client_a.disconnect()
        client_b.disconnect()


def pb_get_tasks(client: AggregatorGRPCClient, wait: float):  # type: ignore[no-untyped-def]
    from openfl_like.protocol import aggregator_pb2

    return aggregator_pb2.GetTasksRequest(header=client._header, wait_seconds=wait)
