"""Named tensors both ways, matched by step, over the in-memory link."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from openfl_like.core.errors import ConfigError, ProtocolError
from openfl_like.vertical import Communicator

DTYPES_SHAPES = [
    ("float32", (32, 64)), ("float64", (3,)), ("int32", (2, 3, 4)), ("int64", ()),
    ("uint8", (0, 5)), ("bool", (7,)), ("float16", (4, 4)),
]


def test_tensors_of_several_dtypes_and_shapes_flow_both_ways(pair) -> None:
    leader, follower = pair
    rng = np.random.default_rng(0)
    for dtype, shape in DTYPES_SHAPES:
        array = (rng.normal(size=shape) * 10).astype(dtype)
        leader.send(f"act_{dtype}", array)
        got = follower.recv(f"act_{dtype}", dtype=dtype)
        assert got.dtype == np.dtype(dtype) and got.shape == shape
        np.testing.assert_array_equal(got, array)
        follower.send(f"grad_{dtype}", array[::-1] if array.ndim else array)
        back = leader.recv(f"grad_{dtype}", dtype=dtype)
        np.testing.assert_array_equal(back, array[::-1] if array.ndim else array)


def test_a_tensor_sent_before_it_is_asked_for_is_kept(pair) -> None:
    leader, follower = pair
    leader.send("early", np.arange(5, dtype=np.float32))
    leader.send("other", np.ones(2, dtype=np.float32))
    np.testing.assert_array_equal(follower.recv("other"), np.ones(2, dtype=np.float32))
    np.testing.assert_array_equal(follower.recv("early"), np.arange(5, dtype=np.float32))


def test_recv_waits_for_a_tensor_sent_later(pair) -> None:
    leader, follower = pair
    timer = threading.Timer(0.05, leader.send, args=("late", np.full(3, 7, np.int64)))
    timer.start()
    try:
        np.testing.assert_array_equal(follower.recv("late", timeout_ms=2_000), [7, 7, 7])
    finally:
        timer.join()


def test_the_same_name_is_matched_step_by_step(pair) -> None:
    leader, follower = pair
    leader.send("x", np.array([0.0]))
    leader.add_step()
    leader.send("x", np.array([1.0]))  # step 1 arrives while the follower is still at step 0
    assert follower.recv("x")[0] == 0.0
    assert follower.step == 0
    follower.add_step()
    assert follower.recv("x")[0] == 1.0
    assert leader.step == follower.step == 1


def test_send_async_uses_the_step_of_the_call(pair) -> None:
    leader, follower = pair
    future = leader.send_async("y", np.array([5], dtype=np.int32))
    leader.add_step()
    future.result(timeout=2)
    assert follower.recv("y", dtype=np.int32)[0] == 5
    futures = [leader.send_async(f"z{i}", np.array([i])) for i in range(6)]
    for f in futures:
        f.result(timeout=2)
    follower.set_step(1)
    assert [int(follower.recv(f"z{i}")[0]) for i in range(6)] == list(range(6))


def test_wrong_dtype_names_both(pair) -> None:
    leader, follower = pair
    leader.send("w", np.zeros(2, dtype=np.int32))
    with pytest.raises(ProtocolError, match=r"recv 'w' at step 0: the peer sent int32, "
                                            r"expected float32"):
        follower.recv("w", dtype="float32")


def test_unsendable_arrays_and_names_are_refused(pair) -> None:
    leader, _ = pair
    with pytest.raises(ProtocolError, match="cannot be sent"):
        leader.send("o", np.array(["a", object()], dtype=object))
    with pytest.raises(ConfigError, match="non-empty"):
        leader.send("", np.zeros(1))


def test_ops_before_initialize_are_config_errors() -> None:
    comm = Communicator("leader", "127.0.0.1:1", name="a", peer_name="b")
    with pytest.raises(ConfigError, match="not initialized"):
        comm.send("x", np.zeros(1))
    comm.set_step(4)
    assert comm.step == 4
    comm.shutdown()
