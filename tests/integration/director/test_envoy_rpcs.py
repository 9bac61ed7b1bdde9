"""Every envoy RPC through DirectorClient against a real mutual-TLS DirectorGRPCServer."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import grpc
import pytest

from openfl_like.core.errors import NotFoundError, ProtocolError
from openfl_like.core.experiments import (
    Broadcast,
    BroadcastKind,
    EnvoyAssignment,
    EventKind,
    FeedbackItem,
    ShardInfo,
)
from openfl_like.director.ports import EnvoyDirectorPort
from openfl_like.protocol import base_pb2
from openfl_like.protocol import director_pb2 as pb

from .conftest import (
    DIRECTOR,
    FEDERATION,
    ClientFactory,
    DirectorHandle,
    RawChannel,
    raw_call,
    wait_until,
)
from .fake_director import FakeDirector, outgoing


def test_shard_info_and_status_round_trip(make_client: ClientFactory, fake: FakeDirector) -> None:
    # Prepare
    client: EnvoyDirectorPort = make_client("envoy-1")
    shard = ShardInfo(contract={"features": {"shape": [8, 8], "dtype": "float32"},
                                "labels": {"classes": [0, 1]}},
                      sample_counts={"train": 120, "valid": 30}, description="site one")
    # Execute
    message = client.update_shard_info(shard)
    period = client.update_envoy_status(["exp-1"], ["exp-2"])
    # Assert
    assert message == "shard of envoy-1 registered"
    assert fake.shards["envoy-1"] == shard
    assert period == fake.heartbeat_seconds
    assert fake.statuses["envoy-1"] == (["exp-1"], ["exp-2"])


def test_wait_experiment_returns_soon_after_the_handler_wakes_it(
    make_client: ClientFactory, fake: FakeDirector
) -> None:
    # Prepare: a poll parked in a thread
    client = make_client("envoy-2")
    result: list[EnvoyAssignment] = []
    done = threading.Event()

    def poll() -> None:
        result.append(client.wait_experiment(4.0))
        done.set()

    thread = threading.Thread(target=poll)
    thread.start()
    assert fake.parked.wait(5)
    # Execute
    started = time.monotonic()
    fake.assign("envoy-2", EnvoyAssignment(
        "exp-9", (Broadcast("b1", BroadcastKind.NOTICE, "", "hello"),)))
    assert done.wait(5)
    elapsed = time.monotonic() - started
    thread.join()
    # Assert
    assert elapsed < 0.1, f"long-poll answered {elapsed * 1000:.0f} ms after the wake-up"
    assert result == [EnvoyAssignment("exp-9", (Broadcast("b1", BroadcastKind.NOTICE, "",
                                                          "hello"),))]


def test_wait_experiment_times_out_empty_and_is_clamped(
    make_client: ClientFactory, director: DirectorHandle
) -> None:
    client = make_client("envoy-1")
    started = time.monotonic()
    assert client.wait_experiment(0.2) == EnvoyAssignment()
    assert 0.15 < time.monotonic() - started < 2.0
    assert director.servicer is not None and director.servicer.polls.in_use() == 0


def test_a_cancelled_poll_frees_its_slot_and_wakes_the_handler(
    raw_channel: RawChannel, fake: FakeDirector, director: DirectorHandle
) -> None:
    # Prepare: a parked poll from a raw call we can cancel
    call = raw_call(raw_channel("envoy-1"), "WaitExperiment")
    header = base_pb2.MessageHeader(sender="envoy-1", receiver=DIRECTOR,
                                    federation_uuid=FEDERATION)
    future = call.future(pb.WaitExperimentRequest(header=header, wait_seconds=30), timeout=60)
    assert fake.parked.wait(5)
    assert director.servicer is not None and director.servicer.polls.in_use() == 1
    # Execute
    future.cancel()
    # Assert: the handler saw its wake-up cancelled, and the slot is free again
    assert fake.poll_cancelled.wait(2)
    servicer = director.servicer
    assert wait_until(lambda: servicer.polls.in_use() == 0)
    with pytest.raises(grpc.FutureCancelledError):
        future.result()


def test_experiment_data_is_downloaded_checked_and_written(
    make_client: ClientFactory, fake: FakeDirector, tmp_path: Path
) -> None:
    # Prepare: two files, one spanning several chunks (chunk size 64 KiB), one empty
    plan = tmp_path / "src" / "plan.yaml"
    plan.parent.mkdir()
    plan.write_text("rounds: 3\n")
    model = tmp_path / "src" / "init.keras"
    model.write_bytes(bytes(range(256)) * 1000)
    empty = tmp_path / "src" / "notes.txt"
    empty.write_bytes(b"")
    fake.packages["exp-1"] = [outgoing(plan), outgoing(model), outgoing(empty)]
    client = make_client("envoy-1")
    # Execute
    written = client.get_experiment_data("exp-1", tmp_path / "dest", max_bytes=1 << 20)
    # Assert
    assert [p.name for p in written] == ["plan.yaml", "init.keras", "notes.txt"]
    for path, source in zip(written, (plan, model, empty), strict=True):
        assert path.parent == tmp_path / "dest"
        assert path.read_bytes() == source.read_bytes()
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == sorted(
        ["plan.yaml", "init.keras", "notes.txt"])  # no temporary files left


def test_experiment_data_over_the_budget_is_refused(
    make_client: ClientFactory, fake: FakeDirector, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 5000)
    fake.packages["exp-1"] = [outgoing(source)]
    with pytest.raises(ProtocolError, match="over the limit of 4096"):
        make_client("envoy-1").get_experiment_data("exp-1", tmp_path / "d", max_bytes=4096)
    assert list((tmp_path / "d").iterdir()) == []


def test_unknown_experiment_data_is_not_found(make_client: ClientFactory, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no experiment 'nope'"):
        make_client("envoy-1").get_experiment_data("nope", tmp_path, max_bytes=100)


def test_a_package_with_a_wrong_sha256_is_refused_by_the_client(
    make_client: ClientFactory, fake: FakeDirector, tmp_path: Path
) -> None:
    # Prepare: the director announces a digest the bytes do not have
    good = tmp_path / "plan.yaml"
    good.write_text("rounds: 1\n")
    bad = tmp_path / "init.keras"
    bad.write_bytes(b"model bytes")
    wrong = hashlib.sha256(b"x").hexdigest()
    fake.packages["exp-1"] = [outgoing(good), outgoing(bad, sha256=wrong)]
    dest = tmp_path / "dest"
    # Execute / Assert
    with pytest.raises(ProtocolError, match=r"init\.keras: sha256 mismatch"):
        make_client("envoy-1").get_experiment_data("exp-1", dest, max_bytes=1 << 20)
    assert list(dest.iterdir()) == []  # all or nothing: the good file is gone too


def test_set_experiment_failed_round_trip(make_client: ClientFactory, fake: FakeDirector) -> None:
    make_client("envoy-2").set_experiment_failed("exp-3", 17, "out of memory", ["a", "b"])
    assert fake.failures == [("envoy-2", "exp-3", 17, "out of memory", ["a", "b"])]


def test_feedback_is_batched_deduplicated_and_truncated(
    make_client: ClientFactory, fake: FakeDirector
) -> None:
    # Prepare: 2500 items (three messages of <= 1000) and one over-long line
    items = [FeedbackItem(seq=i, time=float(i), kind=EventKind.LOG, text=f"line {i}")
             for i in range(1, 2501)]
    items[0] = FeedbackItem(seq=1, time=1.0, kind=EventKind.LOG, text="é" * 10_000)
    scalars = FeedbackItem(seq=2501, time=9.0, kind=EventKind.METRICS, round_number=2,
                           task="train", scalars={"loss": 0.5})
    client = make_client("envoy-1")
    # Execute: sent twice (a retry after a lost reply)
    assert client.send_feedback("exp-1", [*items, scalars]) == 2501
    assert client.send_feedback("exp-1", items[:10]) == 2501
    # Assert
    held = fake.feedback[("envoy-1", "exp-1")]
    assert len(held) == 2501
    assert fake.feedback_batches[:3] == [1000, 1000, 501]
    assert len(held[1].text.encode()) <= 8 * 1024 and held[1].text.startswith("é")
    assert held[2501].scalars == {"loss": 0.5} and held[2501].kind is EventKind.METRICS
    assert held[7].text == "line 7"


def test_more_feedback_items_in_one_message_than_allowed_are_refused(
    raw_channel: RawChannel, fake: FakeDirector
) -> None:
    call = raw_call(raw_channel("envoy-1"), "SendExperimentFeedback")
    header = base_pb2.MessageHeader(sender="envoy-1", receiver=DIRECTOR,
                                    federation_uuid=FEDERATION)
    items = [pb.FeedbackItem(seq=i, kind="log", text="x") for i in range(1, 1002)]
    with pytest.raises(grpc.RpcError) as caught:
        call(iter([pb.ExperimentFeedback(header=header, experiment_name="e", items=items)]),
             timeout=5)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "1001 feedback items in one message" in caught.value.details()
    assert fake.feedback == {}
