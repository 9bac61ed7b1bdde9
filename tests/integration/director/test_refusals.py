"""What the director refuses, and with which status: roles, forged headers, garbage, oversize
or unsafe packages."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from openfl_like.core.errors import AuthError, PermissionDeniedError, ResourceExhaustedError
from openfl_like.core.experiments import EnvoyAssignment, ExperimentKind
from openfl_like.pki import PkiStore
from openfl_like.protocol import base_pb2
from openfl_like.protocol import director_pb2 as pb
from openfl_like.transport.aggregator_client import channel_options
from openfl_like.transport.credentials import TlsFiles, channel_credentials
from openfl_like.transport.director_client import DirectorClient

from .conftest import (
    DIRECTOR,
    FEDERATION,
    ClientFactory,
    DirectorHandle,
    RawChannel,
    fast_settings,
    raw_call,
    wait_until,
)
from .fake_director import FakeDirector


def _header(sender: str, receiver: str = DIRECTOR, federation: str = FEDERATION
            ) -> base_pb2.MessageHeader:
    return base_pb2.MessageHeader(sender=sender, receiver=receiver, federation_uuid=federation)


def test_an_envoy_certificate_cannot_call_experimenter_rpcs(
    make_client: ClientFactory, fake: FakeDirector
) -> None:
    client = make_client("envoy-1")
    with pytest.raises(PermissionDeniedError) as caught:
        client.list_experiments()
    assert caught.value.message.endswith(
        "certificate of 'envoy-1' has role envoy: GetExperimentsList is for experimenter "
        "certificates only")
    with pytest.raises(PermissionDeniedError, match="SetNewExperiment is for experimenter"):
        client.submit("x", ExperimentKind.TRAIN, {})
    assert fake.submit_calls == 0


def test_an_experimenter_certificate_cannot_call_envoy_rpcs(
    make_client: ClientFactory, fake: FakeDirector
) -> None:
    client = make_client("exp-a")
    with pytest.raises(PermissionDeniedError, match="has role experimenter: WaitExperiment is "
                       "for envoy certificates only"):
        client.wait_experiment(1.0)
    with pytest.raises(PermissionDeniedError, match="SendExperimentFeedback is for envoy"):
        client.send_feedback("e", [])
    assert not fake.parked.is_set() and fake.feedback == {}


def test_a_collaborator_certificate_is_refused(make_client: ClientFactory) -> None:
    client = make_client("col-a")
    with pytest.raises(PermissionDeniedError, match="has role collaborator: UpdateEnvoyStatus"):
        client.update_envoy_status([], [])
    with pytest.raises(PermissionDeniedError, match="has role collaborator: GetEnvoys"):
        client.envoys()


def test_a_header_naming_another_envoy_is_unauthenticated(
    raw_channel: RawChannel, fake: FakeDirector
) -> None:
    # Prepare: envoy-1's real certificate, a request claiming to be envoy-2
    call = raw_call(raw_channel("envoy-1"), "UpdateEnvoyStatus")
    # Execute
    with pytest.raises(grpc.RpcError) as caught:
        call(pb.UpdateEnvoyStatusRequest(header=_header("envoy-2"), running=["x"]), timeout=5)
    # Assert
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "header sender 'envoy-2' does not match the certificate's name 'envoy-1'" in (
        caught.value.details())
    assert fake.statuses == {}


def test_the_client_raises_auth_errors_at_once(make_client: ClientFactory) -> None:
    forged = make_client("envoy-2", cert="envoy-1")
    with pytest.raises(AuthError, match="does not match the certificate's name"):
        forged.update_envoy_status([], [])


def test_wrong_receiver_federation_and_unknown_names_are_refused(
    raw_channel: RawChannel, fake: FakeDirector
) -> None:
    call = raw_call(raw_channel("envoy-1"), "UpdateEnvoyStatus")
    cases = [
        (_header("envoy-1", receiver="other-director"), grpc.StatusCode.PERMISSION_DENIED,
         "addressed to 'other-director'"),
        (_header("envoy-1", federation="fed-x"), grpc.StatusCode.FAILED_PRECONDITION,
         "federation 'fed-x'"),
    ]
    for header, code, text in cases:
        with pytest.raises(grpc.RpcError) as caught:
            call(pb.UpdateEnvoyStatusRequest(header=header), timeout=5)
        assert caught.value.code() is code and text in caught.value.details()
    fake.envoy_names.discard("envoy-1")  # no longer registered with the director
    with pytest.raises(grpc.RpcError) as caught:
        call(pb.UpdateEnvoyStatusRequest(header=_header("envoy-1")), timeout=5)
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "'envoy-1' is not an authorised envoy" in caught.value.details()


def test_garbage_bytes_are_invalid_argument_and_the_server_keeps_serving(
    raw_channel: RawChannel, make_client: ClientFactory
) -> None:
    call = raw_call(raw_channel("envoy-1"), "UpdateEnvoyStatus", raw_bytes=True)
    for garbage in (b"\xff\xff\xff\xff", b"\x0a\x05abc"):
        with pytest.raises(grpc.RpcError) as caught:
            call(garbage, timeout=5)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "UpdateEnvoyStatus: malformed request" in caught.value.details()
    assert make_client("envoy-1").update_envoy_status([], []) == 5.0


def test_an_oversize_submission_is_refused_before_any_chunk_is_read(
    pki: PkiStore, fake: FakeDirector
) -> None:
    # Prepare: a director with a 1 MiB package limit; a stream that announces 2 MiB and then
    # holds back its chunks until the reply has arrived
    handle = DirectorHandle(pki, fake, kwargs={"max_package_bytes": 1 << 20}).start()
    release = threading.Event()
    channel = grpc.secure_channel(
        f"127.0.0.1:{handle.port}",
        channel_credentials(TlsFiles.for_participant(pki, "exp-a")),
        channel_options(fast_settings()))

    def requests() -> Iterator[pb.SetNewExperimentRequest]:
        yield pb.SetNewExperimentRequest(
            header=_header("exp-a"),
            submission=pb.ExperimentSubmission(name="big", kind="train", total_size=2 << 20))
        release.wait(10)
        yield pb.SetNewExperimentRequest(chunk=pb.PackageChunk(path="a", size=1, data=b"x"))

    try:
        # Execute
        with pytest.raises(grpc.RpcError) as caught:
            raw_call(channel, "SetNewExperiment")(requests(), timeout=5)
    finally:
        release.set()
        channel.close()
        handle.stop()
    # Assert: answered while the chunks were still held back
    assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "package of 2097152 bytes is over this director's limit of 1048576" in (
        caught.value.details())
    assert fake.submit_calls == 0


def test_the_client_does_not_retry_an_oversize_package(
    pki: PkiStore, fake: FakeDirector, tmp_path: Path
) -> None:
    handle = DirectorHandle(pki, fake, kwargs={"max_package_bytes": 100}).start()
    model = tmp_path / "m.keras"
    model.write_bytes(b"m" * 101)
    try:
        client = DirectorClient(host="127.0.0.1", port=handle.port, name="exp-a",
                                director_name=DIRECTOR, federation_uuid=FEDERATION,
                                tls_files=TlsFiles.for_participant(pki, "exp-a"),
                                settings=fast_settings())
        with client, pytest.raises(ResourceExhaustedError, match="over this director's limit"):
            client.submit("big", ExperimentKind.TRAIN, {"m.keras": model})
    finally:
        handle.stop()
    assert fake.submit_calls == 0


def _submit_raw(channel: grpc.Channel, chunks: list[pb.PackageChunk], total: int
                ) -> grpc.RpcError:
    messages = [pb.SetNewExperimentRequest(
        header=_header("exp-a"),
        submission=pb.ExperimentSubmission(name="e1", kind="train", total_size=total))]
    messages += [pb.SetNewExperimentRequest(chunk=c) for c in chunks]
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(channel, "SetNewExperiment")(iter(messages), timeout=5)
    return caught.value


@pytest.mark.parametrize("name", ["../plan.yaml", "a/b", "a\\b", "..", "", "x\x00y", "n" * 129])
def test_unsafe_file_names_are_invalid_argument(
    raw_channel: RawChannel, fake: FakeDirector, name: str
) -> None:
    sha = hashlib.sha256(b"abc").hexdigest()
    chunks = [pb.PackageChunk(path=name, size=3, sha256=sha, data=b"abc")]
    if not name:  # no name: data outside a file
        chunks = [pb.PackageChunk(size=3, sha256=sha, data=b"abc")]
    error = _submit_raw(raw_channel("exp-a"), chunks, 3)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "unsafe file name" in error.details() or "outside a file" in error.details()
    assert fake.submissions == {}


@pytest.mark.parametrize(
    ("chunks", "total", "reason"),
    [
        ([pb.PackageChunk(path="a", size=2, data=b"abc")], 2, "longer than its 2 bytes"),
        ([pb.PackageChunk(path="a", size=4, data=b"abc")], 4, "ended after 3 of its 4 bytes"),
        ([pb.PackageChunk(path="a", size=3, data=b"abc"),
          pb.PackageChunk(path="a", size=0)], 3, "sent twice"),
        ([pb.PackageChunk(path="a", size=3, data=b"abc"),
          pb.PackageChunk(path="b", size=5, data=b"12345")], 3, "over the limit of 3"),
        ([pb.PackageChunk(path="a", size=3, data=b"abc")], 10, "ended after 3 of the 10 bytes"),
    ],
)
def test_malformed_packages_are_invalid_argument(
    raw_channel: RawChannel, fake: FakeDirector, chunks: list[pb.PackageChunk], total: int,
    reason: str,
) -> None:
    for chunk in chunks:
        if chunk.path:
            chunk.sha256 = hashlib.sha256(chunk.data).hexdigest()  # the handler checks it
    error = _submit_raw(raw_channel("exp-a"), chunks, total)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert reason in error.details()
    assert fake.submissions == {}


def test_a_silent_upload_is_cut_off_after_first_message_seconds(
    raw_channel: RawChannel, director: DirectorHandle
) -> None:
    release = threading.Event()

    def nothing() -> Iterator[pb.SetNewExperimentRequest]:
        release.wait(10)
        return
        yield  # pragma: no cover

    try:
        with pytest.raises(grpc.RpcError) as caught:
            raw_call(raw_channel("exp-a"), "SetNewExperiment")(nothing(), timeout=8)
    finally:
        release.set()
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "no first SetNewExperiment message within 2 s" in caught.value.details()
    servicer = director.servicer
    assert servicer is not None and wait_until(lambda: servicer.transfers.in_use() == 0)


def test_an_unexpected_handler_failure_is_internal_without_details(
    make_client: ClientFactory, fake: FakeDirector
) -> None:
    def broken(envoy: str, wait_seconds: float, *, wakeup: object) -> EnvoyAssignment:
        raise RuntimeError("secret internals")

    fake.wait_experiment = broken  # type: ignore[method-assign]
    with pytest.raises(Exception) as caught:
        make_client("envoy-1").wait_experiment(1.0)
    assert "internal error (see server log)" in str(caught.value)
    assert "secret" not in str(caught.value)



def test_without_tls_the_role_comes_from_the_method_and_the_handler_decides(
    pki: PkiStore, fake: FakeDirector
) -> None:
    # Prepare: an insecure director (local experiments only) and clients without certificates
    settings = fast_settings(tls=False)
    handle = DirectorHandle(pki, fake, kwargs={"settings": settings}).start()

    def client(name: str) -> DirectorClient:
        return DirectorClient(host="127.0.0.1", port=handle.port, name=name,
                              director_name=DIRECTOR, federation_uuid=FEDERATION,
                              tls_files=None, settings=settings)

    try:
        with client("envoy-1") as envoy, client("exp-a") as experimenter:
            # Execute / Assert: each name only in the role the handler knows it in
            assert envoy.update_envoy_status([], []) == 5.0
            assert experimenter.envoys() == {"envoys": ["envoy-1", "envoy-2"]}
            with pytest.raises(PermissionDeniedError, match="not an authorised experimenter"):
                envoy.envoys()
            with pytest.raises(PermissionDeniedError, match="not an authorised envoy"):
                experimenter.update_envoy_status([], [])
    finally:
        handle.stop()
