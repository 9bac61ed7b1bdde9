"""AggregatorGRPCServer + AggregatorGRPCClient over real mutual TLS: good path and each refusal."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import numpy as np
import pytest

from openfl_like.core.errors import (
    AuthError,
    ConfigError,
    ConnectionFailedError,
    NotFoundError,
    PermissionDeniedError,
    PlanMismatchError,
)
from openfl_like.core.messages import NamedTensor, PollStatus, ResultKey, TaskResult
from openfl_like.protocol import base_pb2
from openfl_like.protocol.chunking import Chunk
from openfl_like.protocol.service import AGGREGATOR_RPCS
from openfl_like.protocol.wire import Frame
from openfl_like.transport.aggregator_client import AggregatorGRPCClient
from openfl_like.transport.credentials import channel_credentials
from openfl_like.transport.settings import RetrySettings

from .conftest import AGGREGATOR, FEDERATION, fast_settings, make_operator, start_aggregator

Code = grpc.StatusCode


def result(collaborator: str = "col-a", round_number: int = 3, task: str = "train") -> TaskResult:
    key = ResultKey(collaborator, round_number, task)
    return TaskResult(key, data_size=100, metrics={"loss": 0.5})


# -- good path ---------------------------------------------------------------------------------


def test_good_path_every_rpc(pki, server, make_client, handler):
    # Prepare
    client = make_client("col-a")
    upload = {"w": np.arange(6, dtype=np.float16).reshape(2, 3), "n": np.array(5, dtype=np.int32)}
    threading.Timer(0.3, handler.work.set).start()

    # Execute
    shake = client.handshake("digest-1", {"rounds": "10", "lr": "0.1"})
    beat = client.heartbeat()
    started = time.monotonic()
    tasks = client.get_tasks(wait_seconds=5.0)
    waited = time.monotonic() - started
    model = client.get_aggregated_tensors(3, ["dense/kernel", "dense/bias", "step"])
    ack = client.send_local_task_results(result(), upload)
    with make_operator(pki, server.port) as operator:
        status = operator.get_status()

    # Assert
    assert (shake.round_number, shake.rounds_total) == (3, 10)
    assert beat.round_number == 3
    assert tasks.status is PollStatus.WORK and tasks.tasks[0].params == {"epochs": 1, "lr": 0.1}
    assert 0.2 < waited < 3.0  # the long-poll returned as soon as work appeared
    for name, array in handler.model.items():
        assert model[name].array.dtype == array.dtype
        assert np.array_equal(model[name].array, array)
    assert ack.accepted and not ack.duplicate
    received = handler.received[result().key]
    assert received["w"].dtype == np.float16 and np.array_equal(received["w"], upload["w"])
    assert received["n"].shape == () and received["n"] == 5
    assert status == {"round": 3, "collaborators": sorted(handler.collaborators),
                      "uploads_in_flight": {}}


def test_long_poll_returns_wait_after_bounded_wait(make_client):
    client = make_client("col-a")
    started = time.monotonic()
    reply = client.get_tasks(wait_seconds=0.3)
    assert reply.status is PollStatus.WAIT
    assert time.monotonic() - started < 2.0


def test_plan_mismatch_names_the_setting(make_client):
    client = make_client("col-a")
    with pytest.raises(PlanMismatchError, match="lr") as caught:
        client.handshake("digest-2", {"rounds": "10", "lr": "0.5"})
    assert caught.value.status_code is Code.FAILED_PRECONDITION


# -- refused in the TLS handshake (the server never sees the call) ----------------------------


def _raw_heartbeat(port: int, credentials: grpc.ChannelCredentials) -> grpc.StatusCode:
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        call = channel.unary_unary(AGGREGATOR_RPCS["Heartbeat"].path)
        with pytest.raises(grpc.RpcError) as caught:
            call(b"", timeout=5)
    return caught.value.code()


def test_no_client_certificate_is_refused(pki, server, make_client):
    bundle = pki.store.ca_bundle_path.read_bytes()
    code = _raw_heartbeat(server.port, grpc.ssl_channel_credentials(root_certificates=bundle))
    assert code is Code.UNAVAILABLE
    assert make_client("col-a").heartbeat().round_number == 3  # others are still served


@pytest.mark.parametrize("case", ["other-ca", "expired"])
def test_untrusted_client_certificate_is_refused(pki, server, make_client, case):
    files = pki.foreign_files("col-a") if case == "other-ca" else pki.files("expired-col")
    files = type(files)(files.cert_path, files.key_path, pki.store.ca_bundle_path)
    assert _raw_heartbeat(server.port, channel_credentials(files)) is Code.UNAVAILABLE
    client = make_client("col-a" if case == "other-ca" else "expired-col", files=files)
    with pytest.raises(ConnectionFailedError, match="TLS handshake") as caught:
        client.heartbeat()
    assert "client certificate" in str(caught.value)
    assert make_client("col-b").heartbeat().round_number == 3


def test_server_from_another_ca_is_refused_by_the_client(pki, server, make_client):
    files = pki.files("col-a")
    files = type(files)(files.cert_path, files.key_path, pki.other_store.ca_bundle_path)
    with pytest.raises(ConnectionFailedError, match="did not verify against our CA bundle"):
        make_client("col-a", files=files).heartbeat()


def test_server_name_is_checked_against_sans(pki, server, make_client):
    # Prepare: a retry window far longer than the test may take
    settings = fast_settings(target_name_override="evil.example",
                             retry=RetrySettings(initial_backoff_seconds=0.05,
                                                 max_backoff_seconds=0.3, total_seconds=60.0))
    started = time.monotonic()
    # Execute
    with pytest.raises(ConfigError) as caught:
        make_client("col-a", settings=settings).heartbeat()
    # Assert: fatal at once, naming the name dialled and the certificate's names
    assert time.monotonic() - started < 5.0
    message = str(caught.value)
    assert "does not name 'evil.example'" in message
    assert "it names: localhost, 127.0.0.1" in message and "--san evil.example" in message


def test_connection_refused_is_named(make_client):
    with pytest.raises(ConnectionFailedError, match=r"TCP connect .* refused"):
        make_client("col-a", port=1).heartbeat()


# -- refused by the per-call identity checks ---------------------------------------------------


def test_revoked_certificate_is_refused_at_next_call(pki, make_client):
    client = make_client("col-revoked")
    assert client.heartbeat().round_number == 3
    time.sleep(0.01)  # a distinct CRL mtime even on coarse clocks
    pki.ca.revoke("col-revoked")
    with pytest.raises(AuthError, match="revoked") as caught:
        client.heartbeat()
    assert caught.value.status_code is Code.UNAUTHENTICATED
    assert make_client("col-a").heartbeat().round_number == 3


def test_header_claiming_another_collaborator(make_client):
    with pytest.raises(AuthError, match="does not match") as caught:
        make_client("col-a", sender="col-b").heartbeat()
    assert caught.value.status_code is Code.UNAUTHENTICATED


def test_unknown_collaborator(make_client):
    with pytest.raises(PermissionDeniedError, match="not an authorised") as caught:
        make_client("intruder").heartbeat()
    assert caught.value.status_code is Code.PERMISSION_DENIED


def test_certificate_of_another_role(make_client):
    with pytest.raises(PermissionDeniedError, match="role envoy") as caught:
        make_client("envoy-1").heartbeat()
    assert caught.value.status_code is Code.PERMISSION_DENIED


def test_wrong_receiver(make_client):
    with pytest.raises(PermissionDeniedError, match="addressed to") as caught:
        make_client("col-a", receiver="other-aggregator").heartbeat()
    assert caught.value.status_code is Code.PERMISSION_DENIED


def test_wrong_federation(make_client):
    with pytest.raises(PlanMismatchError, match="federation") as caught:
        make_client("col-a", federation="fed-other").get_tasks(0.1)
    assert caught.value.status_code is Code.FAILED_PRECONDITION


def test_upload_is_refused_before_payload_when_identity_fails(make_client, handler):
    client = make_client("col-a", sender="col-b")
    consumed = []

    def tensors():
        consumed.append(True)
        yield NamedTensor("w", np.zeros(1_000_000, dtype=np.float32))

    with pytest.raises(AuthError) as caught:
        client.send_local_task_results(result("col-b"), tensors)
    assert caught.value.status_code is Code.UNAUTHENTICATED
    assert not handler.deliveries


# -- what a collaborator may download and upload -----------------------------------------------


def test_asking_for_another_collaborators_update(make_client):
    with pytest.raises(PermissionDeniedError) as caught:
        make_client("col-a").get_aggregated_tensors(3, ["dense/kernel"], tags=["col-b", "trained"])
    assert caught.value.status_code is Code.PERMISSION_DENIED


def test_untagged_tensors_never_leave_the_server(make_client, handler):
    handler.get_aggregated_tensors = lambda *args: [NamedTensor("col-b/update", np.zeros(3))]
    with pytest.raises(PermissionDeniedError, match="not part of the global model"):
        make_client("col-a").get_aggregated_tensors(3, ["col-b/update"])


def test_unknown_tensor_is_not_found(make_client):
    with pytest.raises(NotFoundError) as caught:
        make_client("col-a").get_aggregated_tensors(3, ["no/such"])
    assert caught.value.status_code is Code.NOT_FOUND


def test_sending_results_in_another_collaborators_name(make_client, handler):
    with pytest.raises(PermissionDeniedError) as caught:
        make_client("col-a").send_local_task_results(result("col-b"), {"w": np.ones(2)})
    assert caught.value.status_code is Code.PERMISSION_DENIED
    assert not handler.received


def test_handler_crash_is_internal_without_details(make_client, handler, caplog):
    def boom(collaborator):
        raise RuntimeError("secret traceback text")

    handler.heartbeat = boom
    with caplog.at_level(logging.ERROR, logger="openfl_like"), pytest.raises(Exception) as caught:
        make_client("col-a").heartbeat()
    assert caught.value.status_code is Code.INTERNAL
    assert "secret" not in str(caught.value) and "internal error" in str(caught.value)
    assert "secret traceback text" in caplog.text


# -- malformed uploads (sent through a raw channel: our client cannot produce them) -----------


def _raw_upload(pki, port, chunks):
    header = base_pb2.MessageHeader(sender="col-a", receiver=AGGREGATOR, federation_uuid=FEDERATION)
    rpc = AGGREGATOR_RPCS["SendLocalTaskResults"]

    def frames():
        from openfl_like.protocol import convert

        yield Frame(header=header, result=convert.result_to_pb(result()))
        for chunk in chunks:
            yield Frame(chunk=chunk)

    with grpc.secure_channel(f"127.0.0.1:{port}", channel_credentials(pki.files("col-a"))) as ch:
        call = ch.stream_unary(
            rpc.path, request_serializer=rpc.serialize_request,
            response_deserializer=rpc.deserialize_response,
        )
        with pytest.raises(grpc.RpcError) as caught:
            call(frames(), timeout=10)
    return caught.value.code(), caught.value.details()


def _meta(dtype="float32", shape=(2, 2), nbytes=16):
    return base_pb2.TensorMeta(name="w", dtype=dtype, shape=shape, nbytes=nbytes)


def test_truncated_stream(pki, server, handler):
    code, details = _raw_upload(pki, server.port, [Chunk(b"\0" * 8, _meta())])
    assert code is Code.INVALID_ARGUMENT and "truncated" in details
    assert not handler.received


def test_bytes_not_matching_shape(pki, server, handler):
    code, details = _raw_upload(pki, server.port, [Chunk(b"\0" * 12, _meta(nbytes=12))])
    assert code is Code.INVALID_ARGUMENT and "do not match" in details
    code, details = _raw_upload(pki, server.port, [Chunk(b"\0" * 20, _meta())])
    assert code is Code.INVALID_ARGUMENT and "more bytes" in details


def test_unknown_dtype(pki, server):
    code, details = _raw_upload(pki, server.port, [Chunk(b"\0" * 16, _meta(dtype="object"))])
    assert code is Code.INVALID_ARGUMENT and "unknown dtype" in details


def test_oversize_tensor(pki, handler):
    handle = start_aggregator(pki, handler, settings=fast_settings(max_tensor_bytes=1000))
    try:
        chunks = [Chunk(b"\0" * 2048, _meta(dtype="uint8", shape=(2048,), nbytes=2048))]
        code, details = _raw_upload(pki, handle.port, chunks)
    finally:
        handle.running.stop(0)
    assert code is Code.INVALID_ARGUMENT and "limit" in details


# -- reliability ---------------------------------------------------------------------------------


def test_server_restart_under_a_connected_client(pki, handler, make_client, server):
    # Prepare: a connected client, then the server dies
    client = make_client("col-a", settings=fast_settings(
        retry=fast_settings().retry.__class__(0.05, 0.5, 2.0, 15.0)))
    assert client.heartbeat().round_number == 3
    port = server.port
    server.running.stop(0)
    restarted = []

    def restart():
        time.sleep(0.7)
        restarted.append(start_aggregator(pki, handler, port=port))

    thread = threading.Thread(target=restart)
    thread.start()
    try:
        # Execute: the call fails while the server is down, and is retried until it is back
        model = client.get_aggregated_tensors(3, ["dense/kernel"])
    finally:
        thread.join()
        for handle in restarted:
            handle.running.stop(0)
    # Assert
    assert np.array_equal(model["dense/kernel"].array, handler.model["dense/kernel"])


def test_retried_upload_is_counted_once(pki, handler, make_client, server):
    # Prepare: the first delivery is recorded, then the connection dies before the reply
    client = make_client("col-a", settings=fast_settings(
        retry=fast_settings().retry.__class__(0.05, 0.5, 2.0, 15.0)))
    port = server.port
    restarted = []

    def lose_reply(_result):
        if handler.deliveries[_result.key] == 1:
            # cancel this call and wait until that is done, so the ack can never get out first
            server.running.server.stop(0).wait(5)
            threading.Thread(
                target=lambda: restarted.append(start_aggregator(pki, handler, port=port))
            ).start()

    handler.after_record.append(lose_reply)
    uploads = {"w": np.arange(1000, dtype=np.float64)}
    try:
        ack = client.send_local_task_results(result(), uploads)
    finally:
        for handle in restarted:
            handle.running.stop(0)
    # Assert: delivered twice, counted once, and the retry is acknowledged as a duplicate
    key = result().key
    assert handler.deliveries[key] == 2
    assert list(handler.received) == [key]
    assert ack.duplicate and not ack.accepted
    assert np.array_equal(handler.received[key]["w"], uploads["w"])


def test_upload_refuses_a_one_shot_iterator(make_client):
    with pytest.raises(TypeError, match="iterator"):
        make_client("col-a").send_local_task_results(result(), iter([]))


# -- insecure mode ------------------------------------------------------------------------------


def test_tls_off_needs_explicit_setting_and_warns(pki, handler, caplog):
    settings = fast_settings(tls=False)
    with caplog.at_level(logging.WARNING, logger="openfl_like"):
        handle = start_aggregator(pki, handler, settings=settings)
        try:
            with AggregatorGRPCClient(
                host="127.0.0.1", port=handle.port, collaborator_name="col-a",
                aggregator_name=AGGREGATOR, federation_uuid=FEDERATION, tls_files=None,
                settings=settings,
            ) as client:
                assert client.heartbeat().round_number == 3
        finally:
            handle.running.stop(0)
    warnings = [r for r in caplog.records if "TLS IS OFF" in r.getMessage()]
    assert len(warnings) >= 2  # server start and client connect
    assert "trusts the sender" in warnings[0].getMessage()


def test_single_certificate_simulation_mode(pki, handler):
    handle = start_aggregator(pki, handler, single_col_cert_common_name="col-a")
    try:
        with AggregatorGRPCClient(
            host="127.0.0.1", port=handle.port, collaborator_name="col-b",
            aggregator_name=AGGREGATOR, federation_uuid=FEDERATION, tls_files=pki.files("col-a"),
            settings=fast_settings(), single_col_cert_common_name="col-a",
        ) as client:
            assert client.heartbeat().round_number == 3
            assert client.send_local_task_results(result("col-b"), {"w": np.ones(3)}).accepted
    finally:
        handle.running.stop(0)


def test_dns_failure_is_named(make_client):
    with pytest.raises(ConnectionFailedError, match="DNS resolution"):
        make_client("col-a", host="no-such-host.invalid").heartbeat()


def test_second_process_with_the_same_certificate_is_refused(make_client):
    # Prepare: col-a is connected and alive
    first = make_client("col-a")
    first.handshake("digest-1", {})
    second = make_client("col-a")  # another client object = another process's instance id

    # Execute
    with pytest.raises(PermissionDeniedError) as caught:
        second.handshake("digest-1", {})

    # Assert: refused with a reason; the first goes on being served
    assert caught.value.status_code is Code.PERMISSION_DENIED
    assert "already connected from another process" in caught.value.message
    assert first.heartbeat().round_number == 3
