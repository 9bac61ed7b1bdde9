"""What a party sends arrives at its peer bit-exact: tensors (one message or streamed), control
messages and the first contact, over real mutual TLS."""

from __future__ import annotations

import numpy as np
import pytest

from openfl_like.core.vertical import Control, ControlKind, Hello, PartyRole

from .conftest import FOLLOWER, LEADER, SESSION, ClientFactory, Party, fast

ARRAYS = {
    "f32": np.arange(32 * 64, dtype=np.float32).reshape(32, 64) / 7,
    "f64": np.array([np.pi, -0.0, np.inf, np.nan, 1e-300]),
    "i64": np.array([[-(2**63), 2**63 - 1], [0, -1]], dtype=np.int64),
    "u8": np.arange(256, dtype=np.uint8).reshape(4, 4, 16),
    "bool": np.array([True, False, True]),
    "f16": np.array([[1.5, -2.25], [65504, np.nan]], dtype=np.float16),
    "scalar": np.array(3.25, dtype=np.float32),
    "empty": np.zeros((0, 5), dtype=np.float64),
    "3d": np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32),
    "strided": np.arange(40, dtype=np.int64).reshape(5, 8)[:, ::3],
    "bigendian": np.arange(6, dtype=">f8").reshape(2, 3),
}


def same(received: np.ndarray, sent: np.ndarray) -> bool:
    sent = np.asarray(sent)
    return (received.dtype == sent.dtype.newbyteorder("<") or received.dtype == sent.dtype) and \
        received.shape == sent.shape and received.tobytes() == np.ascontiguousarray(
            sent.astype(sent.dtype.newbyteorder("<"))).tobytes()


@pytest.mark.parametrize("mode", ["put", "stream", "auto"])
def test_tensors_of_every_dtype_and_shape_arrive_bit_exact(
    follower: Party, make_client: ClientFactory, mode: str,
) -> None:
    # a 16-byte chunk: most arrays take several pieces, some end inside an element
    client = make_client(follower.address, settings=fast(chunk_bytes=16))
    sends = []
    for step, (name, array) in enumerate(ARRAYS.items()):
        send = {"put": client.put_tensor, "stream": client.stream_tensor,
                "auto": client.send_tensor}[mode]
        sends.append(send(name, step, array, 5.0))
    for pending in sends:
        pending.result()
        assert pending.done()
    got = {t.name: t for t in follower.handler.tensors}
    assert sorted(got) == sorted(ARRAYS)  # concurrent sends: any order
    for step, (name, array) in enumerate(ARRAYS.items()):
        assert got[name].step == step
        assert same(got[name].array, array), name


def test_small_tensor_is_one_message_and_large_one_is_streamed(
    follower: Party, make_client: ClientFactory,
) -> None:
    client = make_client(follower.address, settings=fast(chunk_bytes=1024))
    small = np.ones(256, dtype=np.float32)  # exactly chunk_bytes: one PutTensor
    large = np.arange(1000, dtype=np.float64)  # 8000 bytes: 8 pieces
    client.send_tensor("small", 1, small, 5.0).result()
    client.send_tensor("large", 1, large, 5.0).result()
    small_got, large_got = follower.handler.tensors
    assert not small_got.array.flags.writeable  # wraps the received message: no copy
    assert large_got.array.flags.writeable  # joined into its own buffer
    assert same(small_got.array, small) and same(large_got.array, large)


def test_control_messages_and_connect_arrive_as_sent(
    follower: Party, make_client: ClientFactory,
) -> None:
    client = make_client(follower.address)
    client.connect(Hello(SESSION, LEADER, PartyRole.LEADER, FOLLOWER, step=42), 5.0)
    assert follower.handler.hellos == [Hello(SESSION, LEADER, PartyRole.LEADER, FOLLOWER, step=42)]
    controls = [
        Control(1, ControlKind.CHECKPOINT_VERSION, version=7),
        Control(2, ControlKind.READER_STATE, name="train", block_id=3, sample_index=1280),
        Control(3, ControlKind.TERMINATE_READER, name="train"),
        Control(4, ControlKind.GOODBYE, reason="done: 10 epochs"),
    ]
    for control in controls:
        client.send_control(control, 5.0).result()
    assert follower.handler.controls == controls


def test_a_refusal_of_the_handler_reaches_the_sender_with_its_reason(
    follower: Party, make_client: ClientFactory,
) -> None:
    from openfl_like.core.errors import ProtocolError, RefusedError, ResourceExhaustedError

    client = make_client(follower.address)
    follower.handler.refuse = RefusedError("tensor 'x' at step 1 arrived twice with other bytes")
    # INVALID_ARGUMENT comes back as ProtocolError (RefusedError's base), reason kept
    with pytest.raises(ProtocolError, match="arrived twice with other bytes"):
        client.send_tensor("x", 1, np.ones(3), 2.0).result()
    # a full inbox is retried until the send's timeout, then named as a timeout
    follower.handler.refuse = ResourceExhaustedError("inbox full")
    from openfl_like.core.vertical import OperationTimeoutError

    with pytest.raises(OperationTimeoutError, match=r"send 'x' at step 2 timed out after 0.3 s"):
        client.send_tensor("x", 2, np.ones(3), 0.3).result()
    follower.handler.refuse = None
    client.send_tensor("x", 3, np.ones(3), 2.0).result()
    assert [t.step for t in follower.handler.tensors] == [3]


def test_without_tls_the_header_is_trusted_only_for_the_configured_peer(
    start_follower, make_client: ClientFactory,
) -> None:
    from openfl_like.core.errors import PermissionDeniedError

    party = start_follower(tls=False)
    make_client(party.address, tls=False).send_tensor("a", 0, np.ones(2), 2.0).result()
    with pytest.raises(PermissionDeniedError, match="'mallory' is not the configured peer"):
        make_client(party.address, tls=False, me="mallory").send_tensor(
            "a", 1, np.ones(2), 2.0).result()
    assert [t.step for t in party.handler.tensors] == [0]


def test_a_closed_inbox_answers_unavailable_so_the_sender_retries(
    follower: Party, make_client: ClientFactory,
) -> None:
    from openfl_like.core.vertical import CommunicatorClosedError, OperationTimeoutError

    follower.handler.refuse = CommunicatorClosedError("communicator bank is shut down")
    client = make_client(follower.address)
    with pytest.raises(OperationTimeoutError, match="communicator bank is shut down"):
        client.send_tensor("x", 0, np.ones(2), 0.3).result()
