"""Hostile and misconfigured callers against a real mutual-TLS vertical party: each refusal has
its status code and reason, costs the server nothing, and a good call succeeds right after."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import numpy as np
import pytest

from openfl_like.core.errors import (
    AuthError,
    ConfigError,
    ConnectionFailedError,
    PermissionDeniedError,
    PlanMismatchError,
    ProtocolError,
    ResourceLimitError,
)
from openfl_like.core.vertical import (
    Control,
    ControlKind,
    Hello,
    OperationTimeoutError,
    PartyRole,
)
from openfl_like.protocol import base_pb2
from openfl_like.protocol.vertical_convert import header_pb, hello_to_pb
from openfl_like.protocol.vertical_service import VERTICAL_RPCS, encode_piece, encode_put
from openfl_like.transport.credentials import channel_credentials
from openfl_like.transport.vertical_client import SendCancelledError

from .conftest import FOLLOWER, LEADER, SESSION, ClientFactory, Party, Pki, fast

Code = grpc.StatusCode


def still_serving(party: Party, make_client: ClientFactory) -> None:
    """A good call right after a hostile one succeeds and is delivered."""
    before = len(party.handler.tensors)
    make_client(party.address).send_tensor("ok", 99, np.ones(4, np.float32), 5.0).result()
    assert len(party.handler.tensors) == before + 1


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


@contextmanager
def raw_channel(pki: Pki, party: Party, name: str = LEADER) -> Iterator[grpc.Channel]:
    channel = grpc.secure_channel(party.address, channel_credentials(pki.files(name)))
    try:
        yield channel
    finally:
        channel.close()


def raw_unary(channel: grpc.Channel, method: str, payload: bytes) -> tuple[grpc.StatusCode, str]:
    try:
        channel.unary_unary(VERTICAL_RPCS[method].path)(payload, timeout=5)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return Code.OK, ""


def raw_stream(channel: grpc.Channel, pieces: Iterator[bytes]) -> tuple[grpc.StatusCode, str]:
    try:
        channel.stream_unary(VERTICAL_RPCS["StreamTensor"].path)(pieces, timeout=5)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return Code.OK, ""


def header(sender: str = LEADER, **overrides: str) -> bytes:
    message = header_pb(sender, FOLLOWER, SESSION, PartyRole.LEADER)
    for key, value in overrides.items():
        setattr(message, key, value)
    return message.SerializeToString()


def meta(nbytes: int = 8, name: str = "t") -> bytes:
    return base_pb2.TensorMeta(name=name, round_number=1, dtype="uint8", shape=[nbytes],
                               nbytes=nbytes).SerializeToString()


def test_a_party_certificate_of_another_name_is_refused(
    pki: Pki, follower: Party, make_client: ClientFactory,
) -> None:
    client = make_client(follower.address, me="mallory")
    with pytest.raises(PermissionDeniedError,
                       match="certificate 'mallory' is not the configured peer 'shop'"):
        client.connect(Hello(SESSION, "mallory", PartyRole.LEADER, FOLLOWER), 5.0)
    with pytest.raises(PermissionDeniedError, match="not the configured peer"):
        client.send_tensor("t", 0, np.ones(2), 5.0).result()
    # checked before the payload is read: garbage from mallory is refused as mallory
    with raw_channel(pki, follower, "mallory") as channel:
        assert raw_unary(channel, "PutTensor", b"\xff\xff")[0] is Code.PERMISSION_DENIED
    assert follower.handler.tensors == [] and follower.handler.hellos == []
    still_serving(follower, make_client)


def test_a_collaborator_certificate_is_refused(
    pki: Pki, follower: Party, make_client: ClientFactory,
) -> None:
    client = make_client(follower.address, me=LEADER, files=pki.files("col-shop"))
    with pytest.raises(PermissionDeniedError, match="role collaborator, not party"):
        client.send_tensor("t", 0, np.ones(2), 5.0).result()
    still_serving(follower, make_client)


def test_a_peer_from_another_ca_fails_the_handshake_and_the_server_keeps_serving(
    pki: Pki, follower: Party, make_client: ClientFactory,
) -> None:
    client = make_client(follower.address, files=pki.foreign_files(LEADER))
    # grpc says UNAVAILABLE, but an untrusted certificate never heals: fatal, not retried.
    with pytest.raises(AuthError, match=r"TLS handshake .* did not verify against our CA"):
        client.connect(Hello(SESSION, LEADER, PartyRole.LEADER, FOLLOWER), 5.0)
    started = time.monotonic()
    with pytest.raises(AuthError, match="did not verify against our CA"):
        client.send_tensor("t", 0, np.ones(2), 5.0).result()
    assert time.monotonic() - started < 2.5  # not retried for the whole 5 s
    assert follower.handler.tensors == []
    still_serving(follower, make_client)


@pytest.mark.parametrize(("kwargs", "error", "reason"), [
    ({"me": "bank-too"}, AuthError,
     "header sender 'bank-too' does not match the certificate's name 'shop'"),
    ({"session_id": "digits-v2"}, PlanMismatchError,
     "shop is in session 'digits-v2', this party in 'digits-v1'"),
    ({"role": PartyRole.FOLLOWER}, PlanMismatchError,
     "shop says it is the follower, but this party is the follower, so its peer must be the "
     "leader"),
    ({"peer": "bank-2"}, PlanMismatchError,
     "request is addressed to 'bank-2', this party is 'bank'"),
])
def test_a_header_that_disagrees_is_refused_naming_both_values(
    pki: Pki, follower: Party, make_client: ClientFactory, kwargs: dict, error: type,
    reason: str,
) -> None:
    client = make_client(follower.address, files=pki.files(LEADER), **kwargs)
    with pytest.raises(error, match=reason):
        client.send_tensor("t", 0, np.ones(2), 5.0).result()
    with pytest.raises(error, match=reason):
        client.send_control(Control(1, ControlKind.GOODBYE), 5.0).result()
    assert follower.handler.tensors == [] and follower.handler.controls == []
    still_serving(follower, make_client)


def test_a_connect_refused_for_a_disagreement_is_told_to_the_handler(
    pki: Pki, follower: Party, make_client: ClientFactory,
) -> None:
    """The party whose server refused the peer's Connect must give up too (the disagreement
    holds both ways): the server tells its handler, which a data refusal does not."""
    client = make_client(follower.address, files=pki.files(LEADER), session_id="digits-v2")
    with pytest.raises(PlanMismatchError, match="'digits-v2', this party in 'digits-v1'"):
        client.connect(Hello("digits-v2", LEADER, PartyRole.LEADER, FOLLOWER), 5.0)
    with pytest.raises(PlanMismatchError):
        client.send_tensor("t", 0, np.ones(2), 5.0).result()
    assert len(follower.handler.refusals) == 1, follower.handler.refusals
    assert "'digits-v2', this party in 'digits-v1'" in str(follower.handler.refusals[0])
    # a certificate that is not the configured peer is refused before: no disagreement told
    stranger = make_client(follower.address, me="mallory", files=pki.files("mallory"))
    with pytest.raises(PermissionDeniedError):
        stranger.connect(Hello(SESSION, "mallory", PartyRole.LEADER, FOLLOWER), 5.0)
    assert len(follower.handler.refusals) == 1


def test_a_forged_sender_in_a_raw_request_is_unauthenticated(
    pki: Pki, follower: Party, make_client: ClientFactory,
) -> None:
    with raw_channel(pki, follower) as channel:
        forged = encode_put(header("bank"), meta(), b"12345678")
        code, details = raw_unary(channel, "PutTensor", forged)
        assert code is Code.UNAUTHENTICATED and "'bank'" in details
        code, _ = raw_stream(channel, iter([encode_piece(header("mallory"), meta(), b"1234")]))
        assert code is Code.UNAUTHENTICATED
    assert follower.handler.tensors == []
    still_serving(follower, make_client)


@pytest.mark.parametrize("method", ["Connect", "PutTensor", "PutControl", "StreamTensor"])
@pytest.mark.parametrize("garbage", [b"\xff\xff\xff", b"\x0a\x7f" + b"x" * 3, b"\x08" * 9])
def test_garbage_bytes_to_each_method_are_invalid_argument(
    pki: Pki, follower: Party, make_client: ClientFactory, method: str, garbage: bytes,
) -> None:
    with raw_channel(pki, follower) as channel:
        if method == "StreamTensor":
            code, details = raw_stream(channel, iter([garbage]))
        else:
            code, details = raw_unary(channel, method, garbage)
    # a field-less message (b"\x08"*9 parses as varints) has no header: UNAUTHENTICATED
    assert code in (Code.INVALID_ARGUMENT, Code.UNAUTHENTICATED), (code, details)
    assert details
    still_serving(follower, make_client)


def test_tensor_messages_that_lie_about_their_bytes_are_refused(
    pki: Pki, follower: Party, make_client: ClientFactory,
) -> None:
    with raw_channel(pki, follower) as channel:
        code, details = raw_unary(channel, "PutTensor", encode_put(header(), meta(8), b"1234"))
        assert code is Code.INVALID_ARGUMENT and "got 4 bytes, expected 8" in details
        code, details = raw_unary(channel, "PutTensor", encode_put(
            header(), base_pb2.TensorMeta(name="t", dtype="float32", shape=[3], nbytes=8
                                          ).SerializeToString(), b""))
        assert code is Code.INVALID_ARGUMENT and "do not match" in details
        code, details = raw_stream(channel, iter([encode_piece(header(), meta(8), b"1234")]))
        assert code is Code.INVALID_ARGUMENT and "truncated" in details
        code, details = raw_stream(channel, iter([
            encode_piece(header(), meta(4), b"1234"), encode_piece(None, None, b"5")]))
        assert code is Code.INVALID_ARGUMENT and "one tensor per stream" in details
        code, details = raw_stream(channel, iter([
            encode_piece(header(), meta(8), b"1234"), encode_piece(header(), None, b"5678")]))
        assert code is Code.INVALID_ARGUMENT and "only the first piece" in details
        code, details = raw_stream(channel, iter([encode_piece(header(), None, b"")]))
        assert code is Code.INVALID_ARGUMENT and "metadata" in details
    assert follower.handler.tensors == []
    still_serving(follower, make_client)


def test_an_oversize_tensor_is_refused_from_its_metadata(
    pki: Pki, start_follower, make_client: ClientFactory,
) -> None:
    party = start_follower(settings=fast(max_tensor_bytes=1000))
    client = make_client(party.address, settings=fast(chunk_bytes=256))
    with pytest.raises(ProtocolError, match="over the limit of 1000"):
        client.send_tensor("big", 0, np.zeros(1001, np.uint8), 5.0).result()  # streamed
    with pytest.raises(ProtocolError, match="over the limit of 1000"):
        client.put_tensor("big", 0, np.zeros(1001, np.uint8), 5.0).result()
    # a stream claiming 64 GiB is refused on its first piece, which carries no bytes at all
    with raw_channel(pki, party) as channel:
        started = time.monotonic()
        code, details = raw_stream(channel, iter([encode_piece(header(), meta(64 << 30), b"")]))
        assert code is Code.INVALID_ARGUMENT and "over the limit" in details
        assert time.monotonic() - started < 2
    client.send_tensor("fits", 0, np.zeros(1000, np.uint8), 5.0).result()
    assert [t.name for t in party.handler.tensors] == ["fits"]


def test_a_message_over_grpcs_size_limit_is_a_limit_error_not_retried(
    start_follower, make_client: ClientFactory,
) -> None:
    party = start_follower(settings=fast(chunk_bytes=1024, server_max_recv_bytes=66 * 1024 + 1024))
    client = make_client(party.address)
    started = time.monotonic()
    with pytest.raises(ResourceLimitError, match="over the size limit"):
        client.put_tensor("big", 0, np.zeros(100_000, np.uint8), 5.0).result()
    assert time.monotonic() - started < 2  # not retried until the timeout
    make_client(party.address, settings=fast(chunk_bytes=1024)).send_tensor(
        "big", 0, np.zeros(100_000, np.uint8), 5.0).result()  # streamed in pieces that fit
    assert [t.name for t in party.handler.tensors] == ["big"]


def test_another_protocol_version_is_a_plan_mismatch(
    pki: Pki, follower: Party, make_client: ClientFactory,
) -> None:
    request = hello_to_pb(Hello(SESSION, LEADER, PartyRole.LEADER, FOLLOWER, protocol_version=9))
    with raw_channel(pki, follower) as channel:
        code, details = raw_unary(channel, "Connect", request.SerializeToString())
    assert code is Code.FAILED_PRECONDITION and "protocol version 9, this party 1" in details
    assert follower.handler.hellos == []


def test_concurrent_sends_from_many_threads_all_arrive(
    follower: Party, make_client: ClientFactory,
) -> None:
    client = make_client(follower.address, settings=fast(chunk_bytes=64))

    def sender(index: int) -> None:
        for step in range(10):  # alternately one message and streamed
            client.send_tensor(f"t{index}", step, np.full(4 + 8 * (step % 2), index), 5.0
                               ).result()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    got = {(t.name, t.step): t.array for t in follower.handler.tensors}
    assert len(got) == 60
    assert all(int(array[0]) == int(name[1:]) for (name, _), array in got.items())


class SilentStream:
    """A stream that opens and sends nothing until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        self.release.wait(10)
        return
        yield b""  # pragma: no cover - makes this a generator


def test_a_stream_that_never_sends_its_first_piece_ends_and_frees_its_slot(
    pki: Pki, follower: Party, make_client: ClientFactory,
) -> None:
    silent = SilentStream()
    with raw_channel(pki, follower) as channel:
        started = time.monotonic()
        code, details = raw_stream(channel, iter(silent))
        silent.release.set()
    assert code is Code.DEADLINE_EXCEEDED and "no first piece" in details
    assert time.monotonic() - started < 3  # first_piece_seconds=0.3, not the call's 5 s
    assert wait_until(lambda: follower.server.streams.in_use() == 0)  # the worker unwinds
    make_client(follower.address, settings=fast(chunk_bytes=8)).stream_tensor(
        "after", 1, np.arange(10), 5.0).result()
    assert [t.name for t in follower.handler.tensors] == ["after"]


def test_streams_beyond_the_cap_are_resource_exhausted(
    pki: Pki, start_follower, make_client: ClientFactory,
) -> None:
    party = start_follower(settings=fast(max_streams=1, first_piece_seconds=5.0))
    silent = SilentStream()
    with raw_channel(pki, party) as channel:
        holder = channel.stream_unary(VERTICAL_RPCS["StreamTensor"].path).future(
            iter(silent), timeout=10)
        try:
            assert wait_until(lambda: party.server.streams.in_use() == 1)
            code, details = raw_stream(channel, iter([encode_piece(header(), meta(1), b"x")]))
            assert code is Code.RESOURCE_EXHAUSTED and "tensor streams open" in details
            # unary calls still find a worker while the stream sits
            make_client(party.address).put_tensor("u", 0, np.ones(2), 5.0).result()
            # our client's stream is refused too, and retried with backoff ...
            client = make_client(party.address, settings=fast(chunk_bytes=8))
            pending = client.stream_tensor("s", 0, np.arange(4), 5.0)
            threading.Timer(0.2, silent.release.set).start()  # ... until the slot frees
            pending.result()
            assert pending._attempts > 1  # it was refused at first
        finally:
            silent.release.set()
            holder.cancel()
    assert sorted(t.name for t in party.handler.tensors) == ["s", "u"]


def test_a_revoked_certificate_is_refused(pki: Pki, start_follower, make_client) -> None:
    from openfl_like.core.ids import Role

    pki.ca.certify("shop-old", Role.PARTY, ["localhost", "127.0.0.1"])
    party = start_follower(peer="shop-old")
    client = make_client(party.address, me="shop-old")
    client.send_tensor("a", 0, np.ones(2), 5.0).result()
    pki.ca.revoke("shop-old")
    with pytest.raises(AuthError, match="revoked"):
        client.send_tensor("a", 1, np.ones(2), 5.0).result()
    assert [t.step for t in party.handler.tensors] == [0]


def test_a_server_certificate_without_the_dialled_name_fails_clearly_unless_overridden(
    pki: Pki, start_follower, make_client: ClientFactory,
) -> None:
    party = start_follower(name="bank-far")
    hello = Hello(SESSION, LEADER, PartyRole.LEADER, "bank-far")
    client = make_client(party.address, peer="bank-far")
    with pytest.raises(ConfigError, match=r"does not name '127.0.0.1'.*bank.internal.example"):
        client.connect(hello, 5.0)
    with pytest.raises(ConfigError, match="does not name"):  # fatal at once, not retried
        client.send_tensor("t", 0, np.ones(2), 30.0).result()
    overridden = make_client(party.address, peer="bank-far",
                             settings=fast(target_name_override="bank.internal.example"))
    overridden.connect(hello, 5.0)
    overridden.send_tensor("t", 0, np.ones(2), 5.0).result()
    assert [t.name for t in party.handler.tensors] == ["t"]


def test_cancel_makes_a_pending_send_fail_at_once(
    follower: Party, make_client: ClientFactory,
) -> None:
    follower.handler.gate = threading.Event()  # the peer's inbox does not answer
    client = make_client(follower.address, settings=fast(chunk_bytes=8))
    pending = client.send_tensor("slow", 0, np.ones(2), 30.0)  # 16 bytes: streamed
    assert not pending.done()
    pending.cancel()
    started = time.monotonic()
    with pytest.raises(SendCancelledError, match="send 'slow' at step 0 cancelled"):
        pending.result()
    assert time.monotonic() - started < 0.5 and pending.done()
    follower.handler.gate.set()
    follower.handler.gate = None
    done = client.send_tensor("fast", 1, np.ones(1), 5.0)
    done.result()
    done.cancel()  # a send already acknowledged stays a success
    done.result()


def test_a_one_message_send_is_decided_within_its_timeout_or_by_close(
    follower: Party, make_client: ClientFactory,
) -> None:
    # the fast path's first attempt runs in the sender's thread: bounded by the timeout
    follower.handler.gate = threading.Event()
    client = make_client(follower.address)
    started = time.monotonic()
    with pytest.raises(OperationTimeoutError, match=r"send 'slow' at step 0 timed out after 0.2"):
        client.send_tensor("slow", 0, np.ones(2), 0.2).result()
    assert time.monotonic() - started < 1.5
    # ... and closing the link from another thread ends it at once
    threading.Timer(0.1, client.close).start()
    started = time.monotonic()
    with pytest.raises(SendCancelledError, match="closed"):
        client.send_tensor("slow", 1, np.ones(2), 30.0).result()
    assert time.monotonic() - started < 1.5
    follower.handler.gate.set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_peer(make_client: ClientFactory) -> None:
    client = make_client(f"127.0.0.1:{free_port()}")
    with pytest.raises(ConnectionFailedError, match=r"TCP connect to 127.0.0.1:\d+ refused"):
        client.connect(Hello(SESSION, LEADER, PartyRole.LEADER, FOLLOWER), 2.0)
    with pytest.raises(OperationTimeoutError, match=r"send 't' at step 3 timed out after 0.3 s"):
        client.send_tensor("t", 3, np.ones(2), 0.3).result()
    # cancel wakes a send waiting between retries
    pending = client.send_tensor("t", 4, np.ones(2), 30.0)
    time.sleep(0.05)
    pending.cancel()
    started = time.monotonic()
    with pytest.raises(SendCancelledError):
        pending.result()
    assert time.monotonic() - started < 0.5
    client.close()
    with pytest.raises(SendCancelledError, match="closed"):
        client.send_tensor("t", 5, np.ones(2), 1.0)
