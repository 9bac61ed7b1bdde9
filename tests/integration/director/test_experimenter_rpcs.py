"""Every experimenter RPC through DirectorClient, and the metric stream across a restart."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from openfl_like.core.errors import ConnectionFailedError, NotFoundError, PermissionDeniedError
from openfl_like.core.experiments import EventKind, ExperimentEvent, ExperimentKind
from openfl_like.director.ports import ExperimenterDirectorPort
from openfl_like.pki import PkiStore
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.director_client import DirectorClient
from openfl_like.transport.retry import RetryPolicy

from .conftest import DIRECTOR, FEDERATION, ClientFactory, DirectorHandle, fast_settings
from .fake_director import FakeDirector, outgoing


def _package(tmp_path: Path) -> dict[str, Path]:
    plan = tmp_path / "pkg" / "plan.yaml"
    plan.parent.mkdir(exist_ok=True)
    plan.write_text("aggregator:\n  rounds_to_train: 2\n")
    model = tmp_path / "pkg" / "model.keras"
    model.write_bytes(bytes(range(256)) * 700)  # ~175 KiB: several 64 KiB chunks
    return {"plan.yaml": plan, "init.keras": model}


def test_submit_and_the_json_calls_round_trip(
    make_client: ClientFactory, fake: FakeDirector, tmp_path: Path
) -> None:
    # Prepare
    client: ExperimenterDirectorPort = make_client("exp-a")
    files = _package(tmp_path)
    # Execute
    name = client.submit("mnist-1", ExperimentKind.TRAIN, files)
    # Assert: the handler got the exact bytes, the size announced up front
    assert name == "mnist-1"
    experimenter, submission, received = fake.submissions["mnist-1"]
    assert experimenter == "exp-a" and submission.kind is ExperimentKind.TRAIN
    assert submission.total_size == sum(p.stat().st_size for p in files.values())
    assert received == {n: p.read_bytes() for n, p in files.items()}
    assert client.list_experiments() == {"experiments": ["mnist-1"]}
    assert client.describe_experiment("mnist-1") == {
        "name": "mnist-1", "kind": "train", "files": ["init.keras", "plan.yaml"]}
    assert client.experiment_status("mnist-1") == {"name": "mnist-1", "state": "queued"}
    assert client.envoys() == {"envoys": ["envoy-1", "envoy-2"]}
    assert client.dataset_info() == {"envoys": {}}
    assert client.cancel_experiment("mnist-1", "enough") == {
        "name": "mnist-1", "state": "cancelled", "reason": "enough"}
    assert client.remove_experiment("mnist-1") == {"name": "mnist-1", "state": "removed"}
    assert fake.cancelled == [("mnist-1", "enough")] and fake.removed == ["mnist-1"]


def test_handler_refusals_reach_the_experimenter_as_errors(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    make_client("exp-a").submit("mine", ExperimentKind.VALIDATE, _package(tmp_path))
    other = make_client("exp-b")
    with pytest.raises(PermissionDeniedError, match="not an experiment of exp-b"):
        other.experiment_status("mine")
    with pytest.raises(NotFoundError, match="no experiment 'ghost'"):
        other.describe_experiment("ghost")


def test_trained_model_download_is_atomic_and_checked(
    make_client: ClientFactory, fake: FakeDirector, tmp_path: Path
) -> None:
    # Prepare
    model = tmp_path / "best.keras"
    model.write_bytes(b"\x01\x02" * 100_000)
    fake.models[("exp-1", "best")] = outgoing(model)
    fake.models[("exp-1", "last")] = outgoing(model, sha256=hashlib.sha256(b"").hexdigest())
    client = make_client("exp-a")
    dest = tmp_path / "out" / "model.keras"
    dest.parent.mkdir()
    # Execute
    written = client.trained_model("exp-1", "best", dest)
    # Assert
    assert written == dest and dest.read_bytes() == model.read_bytes()
    dest.write_bytes(b"previous")
    with pytest.raises(Exception, match="sha256 mismatch"):
        client.trained_model("exp-1", "last", dest)
    assert dest.read_bytes() == b"previous"  # a bad download never replaces the file
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.keras"]


def _event(seq: int) -> ExperimentEvent:
    return ExperimentEvent(seq=seq, time=float(seq), kind=EventKind.METRICS,
                           source="aggregator", round_number=seq, task="train",
                           metrics={"loss": 1.0 / seq})


def test_metric_stream_from_a_sequence_number_until_the_end(
    make_client: ClientFactory, fake: FakeDirector
) -> None:
    for seq in range(1, 6):
        fake.publish("exp-1", _event(seq))
    fake.finish("exp-1")
    events = list(make_client("exp-a").metric_stream("exp-1", from_seq=3))
    assert events == [_event(3), _event(4), _event(5)]
    assert fake.stream_ends == ["done"]


def test_metric_stream_resumes_after_a_server_restart_without_gaps_or_duplicates(
    pki: PkiStore, fake: FakeDirector, director: DirectorHandle
) -> None:
    # Prepare: a client whose backoff sleeps tell us the stream broke
    broken = threading.Event()  # set at the second backoff: a reconnect failed meanwhile
    sleeper = threading.Event()
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 2:
            broken.set()
        sleeper.wait(seconds)

    retry = RetryPolicy(initial_backoff=0.05, max_backoff=0.2, total_seconds=10.0, sleep=sleep)
    client = DirectorClient(host="127.0.0.1", port=director.port, name="exp-a",
                            director_name=DIRECTOR, federation_uuid=FEDERATION,
                            tls_files=TlsFiles.for_participant(pki, "exp-a"),
                            settings=fast_settings(), retry=retry)
    seen: list[int] = []
    three = threading.Event()
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            for event in client.metric_stream("exp-1"):
                seen.append(event.seq)
                if len(seen) == 3:
                    three.set()
        except BaseException as exc:  # reported by the assertions below
            errors.append(exc)

    for seq in (1, 2, 3):
        fake.publish("exp-1", _event(seq))
    thread = threading.Thread(target=consume)
    thread.start()
    try:
        assert three.wait(5)
        port = director.port
        # Execute: the server goes away mid-stream, events arrive meanwhile, it comes back
        director.stop()
        assert broken.wait(5), "the client never retried against the stopped server"
        for seq in (4, 5, 6):
            fake.publish("exp-1", _event(seq))
        director.start(port=port)
        fake.finish("exp-1")
        thread.join(15)
    finally:
        fake.finish("exp-1")
        thread.join(5)
        client.close()
    # Assert
    assert not thread.is_alive()
    assert errors == []
    assert seen == [1, 2, 3, 4, 5, 6]


def test_metric_stream_gives_up_after_the_retry_deadline(
    make_client: ClientFactory, director: DirectorHandle
) -> None:
    client = make_client("exp-a", retry=RetryPolicy(initial_backoff=0.01, max_backoff=0.05,
                                                    total_seconds=0.3))
    director.stop()
    with pytest.raises(ConnectionFailedError, match="metric stream of 'exp-1'"):
        next(iter(client.metric_stream("exp-1")))
