"""Hostile clients against a real mutual-TLS AggregatorGRPCServer: each refusal next to a success.

Raw grpc channels send what our client never would: silent uploads, garbage bytes, duplicated
tensor names. Every server started here is stopped in ``finally`` (or by the fixture).
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import grpc
import numpy as np
import pytest
from cryptography import x509

from openfl_like.core.errors import (
    AuthError,
    ConnectionFailedError,
    FederationError,
    PermissionDeniedError,
    ProtocolError,
    ResourceExhaustedError,
    UnavailableError,
)
from openfl_like.core.ids import Role
from openfl_like.core.messages import NamedTensor, PollStatus, ResultKey, TaskResult
from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import base_pb2
from openfl_like.protocol.service import AGGREGATOR_RPCS
from openfl_like.protocol.wire import Frame
from openfl_like.transport.credentials import channel_credentials
from openfl_like.transport.settings import RetrySettings

from .conftest import AGGREGATOR, FEDERATION, fast_settings, start_aggregator

Code = grpc.StatusCode


def header(sender: str = "col-a") -> base_pb2.MessageHeader:
    return base_pb2.MessageHeader(sender=sender, receiver=AGGREGATOR, federation_uuid=FEDERATION)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Readiness check: poll a condition the server exposes, bounded in time."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


@contextmanager
def raw_channel(pki, port: int, name: str = "col-a") -> Iterator[grpc.Channel]:
    channel = grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(pki.files(name)))
    try:
        yield channel
    finally:
        channel.close()


def raw_unary(channel: grpc.Channel, method: str, payload: bytes, timeout: float = 5.0):
    """A unary call with bytes of our choosing; returns (code, details)."""
    call = channel.unary_unary(AGGREGATOR_RPCS[method].path)
    try:
        call(payload, timeout=timeout)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return Code.OK, ""


class SilentUpload:
    """An upload that opens the stream and sends nothing until ``release()`` (or one frame)."""

    def __init__(self, channel: grpc.Channel, first: Frame | None = None) -> None:
        rpc = AGGREGATOR_RPCS["SendLocalTaskResults"]
        self._call = channel.stream_unary(
            rpc.path, request_serializer=rpc.serialize_request,
            response_deserializer=rpc.deserialize_response,
        )
        self._release = threading.Event()
        self._first = first
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _frames(self) -> Iterator[Frame]:
        if self._first is not None:
            yield self._first
        self._release.wait(30)

    def _run(self) -> None:
        try:
            self._call(self._frames(), timeout=30)
            self.code = Code.OK
        except grpc.RpcError as error:
            self.code, self.details = error.code(), error.details()
        finally:
            self.done.set()

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


def result(collaborator: str = "col-a", **changes: object) -> TaskResult:
    fields = {"data_size": 100, "metrics": {"loss": 0.5}, **changes}
    return TaskResult(ResultKey(collaborator, 3, "train"), **fields)  # type: ignore[arg-type]


# -- 1. identity first, and an upload's first message bounded in time -------------------------


def test_silent_uploads_end_with_deadline_exceeded_and_free_their_workers(pki, handler):
    # Prepare: two workers only, both taken by uploads that never send
    settings = fast_settings(first_message_seconds=0.5, server_workers=2)
    handle = start_aggregator(pki, handler, settings=settings)
    uploads: list[SilentUpload] = []
    try:
        with raw_channel(pki, handle.port) as channel:
            started = time.monotonic()
            uploads = [SilentUpload(channel) for _ in range(2)]

            # Execute
            assert all(u.done.wait(5) for u in uploads)
            elapsed = time.monotonic() - started
            # Assert: ended by the server, while the clients still hold their streams open
            assert [u.code for u in uploads] == [Code.DEADLINE_EXCEEDED] * 2
            assert "no first upload message within 0.5 s" in uploads[0].details
            assert elapsed < 3.0
            # the workers are free: a heartbeat is served at once by one of the two
            code, _ = raw_unary(channel, "Heartbeat", pb.HeartbeatRequest(
                header=header()).SerializeToString(), timeout=2)
            assert code is Code.OK
            assert handle.servicer.streams.in_use() == 0
    finally:
        for upload in uploads:
            upload.release()
        handle.running.stop(0)


def test_a_slow_upload_after_a_timely_first_message_is_accepted(pki, handler, make_client):
    # Prepare: the first message comes at once, the tensors only after the first-message time
    settings = fast_settings(first_message_seconds=0.3)
    handle = start_aggregator(pki, handler, settings=settings)
    try:
        client = make_client("col-a", port=handle.port, settings=settings)

        def slow_tensors():
            threading.Event().wait(0.6)  # the stream is slow, not silent: that is allowed
            yield NamedTensor("w", np.arange(4, dtype=np.float32), 3)

        # Execute
        ack = client.send_local_task_results(result(), slow_tensors)
    finally:
        handle.running.stop(0)
    # Assert
    assert ack.accepted
    assert np.array_equal(handler.received[result().key]["w"], np.arange(4, dtype=np.float32))


def test_a_revoked_certificate_is_refused_before_its_first_message(pki, handler):
    # Prepare: a certificate revoked before it opens an upload it never feeds
    pki.ca.certify("col-gone", Role.COLLABORATOR, force=True)
    handler.collaborators.add("col-gone")
    pki.ca.revoke("col-gone")
    settings = fast_settings(first_message_seconds=5.0)
    handle = start_aggregator(pki, handler, settings=settings)
    try:
        with raw_channel(pki, handle.port, "col-gone") as channel:
            started = time.monotonic()
            upload = SilentUpload(channel)
            assert upload.done.wait(4)  # long before the 5 s first-message limit
            upload.release()
            # Assert
            assert upload.code is Code.UNAUTHENTICATED and "revoked" in upload.details
            assert time.monotonic() - started < 4
            assert handle.servicer.streams.in_use() == 0
        with raw_channel(pki, handle.port, "col-a") as channel:  # others are served
            assert raw_unary(channel, "Heartbeat", pb.HeartbeatRequest(
                header=header()).SerializeToString())[0] is Code.OK
    finally:
        handle.running.stop(0)


# -- 2. per-peer caps --------------------------------------------------------------------------


def test_streams_beyond_the_per_peer_cap_are_refused_and_slots_come_back(pki, handler):
    # Prepare: col-a holds both of its stream slots with uploads that have not sent anything
    settings = fast_settings(max_streams_per_peer=2, first_message_seconds=20.0)
    handle = start_aggregator(pki, handler, settings=settings)
    silent: list[SilentUpload] = []
    download = pb.GetAggregatedTensorsRequest(header=header(), round_number=3,
                                              tensor_names=["step"], tags=["aggregated"])
    rpc = AGGREGATOR_RPCS["GetAggregatedTensors"]
    try:
        with raw_channel(pki, handle.port, "col-a") as a, raw_channel(pki, handle.port,
                                                                        "col-b") as b:
            silent = [SilentUpload(a) for _ in range(2)]
            assert wait_until(lambda: handle.servicer.streams.in_use() == 2)

            def fetch(channel: grpc.Channel, sender: str) -> Code:
                call = channel.unary_stream(rpc.path, request_serializer=None,
                                            response_deserializer=rpc.deserialize_response)
                request = pb.GetAggregatedTensorsRequest()
                request.CopyFrom(download)
                request.header.sender = sender
                try:
                    frames = list(call(request.SerializeToString(), timeout=5))
                except grpc.RpcError as error:
                    fetch.details = error.details()  # type: ignore[attr-defined]
                    return error.code()
                return Code.OK if frames and frames[0].chunk is not None else Code.UNKNOWN

            # Execute / Assert: a third stream of col-a is refused at once, with a reason
            assert fetch(a, "col-a") is Code.RESOURCE_EXHAUSTED
            assert "2 tensor streams open already" in fetch.details  # type: ignore[attr-defined]
            third = SilentUpload(a)
            assert third.done.wait(5) and third.code is Code.RESOURCE_EXHAUSTED
            # ... while col-b, another certificate, is served
            assert fetch(b, "col-b") is Code.OK

            # the silent uploads end (the clients close them): their slots come back
            for upload in silent:
                upload.release()
            assert wait_until(lambda: handle.servicer.streams.in_use() == 0)
            assert fetch(a, "col-a") is Code.OK
    finally:
        for upload in silent:
            upload.release()
        handle.running.stop(0)


def test_slots_are_released_on_refusals_and_cancelled_downloads(pki, handler, make_client):
    # Prepare: one stream per peer; a model far larger than the HTTP/2 windows, so a download
    # the client stops reading stays open on the server
    settings = fast_settings(max_streams_per_peer=1, chunk_size=64 * 1024)
    handler.model["big"] = np.zeros(8_000_000, dtype=np.float32)  # 32 MB
    handle = start_aggregator(pki, handler, settings=settings)
    try:
        # a refused upload (header names another aggregator) releases its slot
        bad = make_client("col-a", port=handle.port, settings=settings, receiver="other")
        with pytest.raises(PermissionDeniedError, match="addressed to"):
            bad.send_local_task_results(result(), {"w": np.ones(2)})
        assert handle.servicer.streams.in_use() == 0

        # Execute: a download abandoned after its first tensor
        client = make_client("col-a", port=handle.port, settings=settings)
        partial = client.iter_aggregated_tensors(3, ["dense/bias", "big"])
        assert next(partial).name == "dense/bias"
        assert handle.servicer.streams.in_use() == 1
        partial.close()  # cancels the call mid-stream

        # Assert: the slot comes back and is usable again
        assert wait_until(lambda: handle.servicer.streams.in_use() == 0)
        assert client.get_aggregated_tensors(3, ["big"])["big"].array.shape == (8_000_000,)
    finally:
        handle.running.stop(0)


def test_long_polls_beyond_the_per_peer_cap(pki, handler, make_client):
    # Prepare: col-a has one poll parked, the cap is one
    settings = fast_settings(max_polls_per_peer=1, long_poll_seconds=1.0,
                             retry=RetrySettings(0.05, 0.2, 2.0, 10.0))
    handle = start_aggregator(pki, handler, settings=settings)
    try:
        parked = make_client("col-a", port=handle.port, settings=settings)
        box: list = []
        poller = threading.Thread(target=lambda: box.append(parked.get_tasks(wait_seconds=1.0)))
        poller.start()
        assert wait_until(lambda: handler.parked == 1)

        # Execute: a second poll of col-a (raw: no retry) is refused; col-b is served
        request = pb.GetTasksRequest(header=header(), wait_seconds=0.1).SerializeToString()
        with raw_channel(pki, handle.port) as channel:
            code, details = raw_unary(channel, "GetTasks", request)
        other = make_client("col-b", port=handle.port, settings=settings)
        assert other.get_tasks(wait_seconds=0.1).status is PollStatus.WAIT

        # Assert
        assert code is Code.RESOURCE_EXHAUSTED and "long-polls" in details
        # our client retries RESOURCE_EXHAUSTED with backoff: a second poll of the same process
        # gets in once the first is over
        assert parked.get_tasks(wait_seconds=0.1).status is PollStatus.WAIT
        poller.join(5)
        assert box and box[0].status is PollStatus.WAIT
        assert handle.servicer.polls.in_use() == 0
    finally:
        handle.running.stop(0)


def test_client_gives_up_on_a_cap_with_resource_exhausted(pki, handler, make_client):
    settings = fast_settings(max_polls_per_peer=1, long_poll_seconds=3.0,
                             retry=RetrySettings(0.05, 0.1, 2.0, 0.5))
    handle = start_aggregator(pki, handler, settings=settings)
    try:
        client = make_client("col-a", port=handle.port, settings=settings)
        poller = threading.Thread(target=lambda: client.get_tasks(wait_seconds=3.0))
        poller.start()
        assert wait_until(lambda: handler.parked == 1)
        with pytest.raises(ResourceExhaustedError, match="still refused after") as caught:
            client.get_tasks(wait_seconds=0.1)
        assert caught.value.status_code is Code.RESOURCE_EXHAUSTED
        handler.work.set()
        poller.join(5)
    finally:
        handle.running.stop(0)


# -- 3. garbage unary requests ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["Handshake", "Heartbeat", "GetTasks", "GetStatus"])
def test_unparsable_unary_request_is_invalid_argument(pki, server, method):
    garbage = b"\xff\xff\xff\xff\x0f\x12\x99"
    request_type = {"Handshake": pb.HandshakeRequest, "Heartbeat": pb.HeartbeatRequest,
                    "GetTasks": pb.GetTasksRequest, "GetStatus": pb.GetStatusRequest}[method]
    extra = {"plan_digest": "digest-1"} if method == "Handshake" else {}
    good_header = header(sender="ops1") if method == "GetStatus" else header()
    good = request_type(header=good_header, **extra).SerializeToString()
    caller = "ops1" if method == "GetStatus" else "col-a"  # status is for operators only
    with raw_channel(pki, server.port, caller) as channel:
        assert raw_unary(channel, method, good)[0] is Code.OK
        code, details = raw_unary(channel, method, garbage)
    assert code is Code.INVALID_ARGUMENT
    assert details.startswith(f"{method}: malformed request")


def test_garbage_download_request_is_invalid_argument(pki, server):
    rpc = AGGREGATOR_RPCS["GetAggregatedTensors"]
    with raw_channel(pki, server.port) as channel:
        call = channel.unary_stream(rpc.path, request_serializer=None,
                                    response_deserializer=None)
        with pytest.raises(grpc.RpcError) as caught:
            list(call(b"\x0a\xff\xff\xff\xff\x0f", timeout=5))
    assert caught.value.code() is Code.INVALID_ARGUMENT


def test_a_revoked_peer_is_refused_before_its_bytes_are_parsed(pki, handler):
    pki.ca.certify("col-gone2", Role.COLLABORATOR, force=True)
    handler.collaborators.add("col-gone2")
    pki.ca.revoke("col-gone2")
    handle = start_aggregator(pki, handler)
    try:
        with raw_channel(pki, handle.port, "col-gone2") as channel:
            code, details = raw_unary(channel, "Heartbeat", b"\xff\xff garbage")
    finally:
        handle.running.stop(0)
    assert code is Code.UNAUTHENTICATED and "revoked" in details


# -- 4. GetAggregatedTensors names --------------------------------------------------------------


def test_duplicate_or_too_many_tensor_names_are_refused(pki, handler, make_client):
    settings = fast_settings(max_tensor_names_per_request=3)
    handle = start_aggregator(pki, handler, settings=settings)
    try:
        client = make_client("col-a", port=handle.port, settings=settings)
        names = ["dense/kernel", "dense/bias", "step"]
        assert sorted(client.get_aggregated_tensors(3, names)) == sorted(names)
        with pytest.raises(ProtocolError, match="'step' is requested more than once") as dup:
            client.get_aggregated_tensors(3, ["step", "dense/bias", "step"])
        with pytest.raises(ProtocolError, match=r"4 tensor names .* limit of 3") as many:
            client.get_aggregated_tensors(3, [*names, "other"])
    finally:
        handle.running.stop(0)
    assert dup.value.status_code is many.value.status_code is Code.INVALID_ARGUMENT


# -- 5. result metadata bounds ------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "match"), [
    ({"metrics": {"loss": float("nan")}}, "'loss' is nan, not a finite number"),
    ({"metrics": {"acc": float("inf")}}, "'acc' is inf"),
    ({"metrics": {f"m{i}": 1.0 for i in range(257)}}, "257 metrics, more than 256"),
    ({"metrics": {"k" * 129: 1.0}}, "1 to 128 characters"),
    ({"data_size": -1}, r"data_size -1 is outside \[0, 2\*\*53\)"),
    ({"data_size": 2**53}, "outside"),
])  # fmt: skip
def test_result_metadata_out_of_bounds_is_refused(make_client, handler, changes, match):
    client = make_client("col-a")
    bounded = result(metrics={f"m{i}": 1.0 for i in range(256)}, data_size=2**53 - 1)
    assert client.send_local_task_results(bounded, {"w": np.ones(2)}).accepted
    with pytest.raises(ProtocolError, match=match) as caught:
        client.send_local_task_results(result(**changes), {"w": np.ones(2)})
    assert caught.value.status_code is Code.INVALID_ARGUMENT
    assert handler.deliveries[bounded.key] == 1  # the refused one never reached the handler


# -- 10. error kinds over the wire --------------------------------------------------------------


def test_unavailable_from_the_handler_reaches_the_client_with_its_message(pki, server, handler,
                                                                          make_client):
    calls = []

    def full_disk(collaborator):
        calls.append(collaborator)
        if len(calls) < 3:
            raise UnavailableError("aggregator disk is full (12 MB free)")
        return type(handler).heartbeat(handler, collaborator)

    handler.heartbeat = full_disk
    with raw_channel(pki, server.port) as channel:
        code, details = raw_unary(channel, "Heartbeat", pb.HeartbeatRequest(
            header=header()).SerializeToString())
    assert (code, details) == (Code.UNAVAILABLE, "aggregator disk is full (12 MB free)")
    # our client retries it, and succeeds once the disk has room
    assert make_client("col-a").heartbeat().round_number == 3
    assert len(calls) == 3


def test_unavailable_for_good_fails_with_the_servers_message(server, handler, make_client):
    def full_disk(collaborator):
        raise UnavailableError("aggregator disk is full")

    handler.heartbeat = full_disk
    with pytest.raises(ConnectionFailedError, match="aggregator disk is full"):
        make_client("col-a").heartbeat()


def test_a_failed_federation_is_aborted_not_a_plan_mismatch(server, handler, make_client):
    def failed(collaborator, wait_seconds):
        raise FederationError("aggregation failed: weights sum to zero")

    handler.get_tasks = failed
    client = make_client("col-a")
    started = time.monotonic()
    with pytest.raises(FederationError, match="weights sum to zero") as caught:
        client.get_tasks(wait_seconds=0.1)
    assert caught.value.status_code is Code.ABORTED
    assert time.monotonic() - started < 1.0  # not retried


# -- 6. CRL expiry and refresh on a running server --------------------------------------------


def test_an_expired_crl_refuses_everyone_until_refreshed(pki, handler, make_client, server):
    from openfl_like.pki.revocation import build_crl, crl_entries, crl_number, crl_pem

    client = make_client("col-a")
    assert client.heartbeat().round_number == 3
    current = x509.load_pem_x509_crl(pki.store.crl_path.read_bytes())
    expired = build_crl(pki.ca.signing_cert, pki.ca._signing_key, crl_entries(current),
                        number=crl_number(current) + 1,
                        now=datetime.now(timezone.utc) - timedelta(days=3),
                        validity=timedelta(days=1))
    pki.store.crl_path.write_bytes(crl_pem(expired))
    os.utime(pki.store.crl_path)
    try:
        with pytest.raises(AuthError, match=r"cannot check revocation: CRL .* expired"):
            client.heartbeat()
    finally:
        pki.ca.refresh_crl()
    assert client.heartbeat().round_number == 3


# -- 8. the server's TLS chain -------------------------------------------------------------------


def test_server_presents_leaf_and_signing_ca(pki, server, tmp_path):
    # Prepare: a client that trusts only the root must still verify the server
    files = pki.files("col-a")
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-showcerts",
               "-cert", str(files.cert_path), "-key", str(files.key_path),
               "-CAfile", str(pki.store.root_cert_path), "-verify_return_error"]
    # Execute
    out = subprocess.run(command, input="", capture_output=True, text=True, timeout=30).stdout
    # Assert
    assert out.count("-----BEGIN CERTIFICATE-----") == 2
    assert "CN = aggregator" in out and "Signing CA" in out
    assert "Verify return code: 0 (ok)" in out


# -- 9. revoked participants, for the round logic -----------------------------------------------


def test_revoked_participants_lists_seen_revoked_certificates(pki, handler, make_client, server):
    # Prepare: col-rp and col-ok have called; col-unseen has a certificate but never called
    for name in ("col-rp", "col-ok", "col-unseen"):
        pki.ca.certify(name, Role.COLLABORATOR, force=True)
        handler.collaborators.add(name)
    for name in ("col-rp", "col-ok"):
        make_client(name).heartbeat()
    servicer = server.servicer
    assert not {"col-rp", "col-ok"} & servicer.revoked_participants()

    # Execute: revoke two, without col-rp calling again
    pki.ca.revoke("col-rp")
    pki.ca.revoke("col-unseen")
    revoked = servicer.revoked_participants()

    # Assert: col-rp at once; col-unseen was never seen; col-ok is fine
    assert "col-rp" in revoked and "col-unseen" not in revoked and "col-ok" not in revoked
    assert servicer.revoked_participants() is revoked  # cached while nothing changed
    started = time.perf_counter()
    for _ in range(1000):
        servicer.revoked_participants()
    assert time.perf_counter() - started < 1.0  # polled twice a second: ~µs each
    with pytest.raises(AuthError, match="revoked"):
        make_client("col-rp").heartbeat()
    assert "col-rp" in servicer.revoked_participants()
