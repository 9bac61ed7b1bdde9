"""Checkpoint version and reader states: leader sends, follower receives, in order."""

from __future__ import annotations

import pytest

from openfl_like.core.errors import ConfigError
from openfl_like.core.vertical import OperationTimeoutError, ReaderState


def test_ckpt_version_reaches_the_follower(pair) -> None:
    leader, follower = pair
    leader.send_ckpt_version(7)
    assert follower.recv_ckpt_version() == 7
    with pytest.raises(OperationTimeoutError, match=r"^recv_ckpt_version at step 0 timed out"):
        follower.recv_ckpt_version(timeout_ms=50)


def test_reader_states_then_terminate_in_order(pair) -> None:
    leader, follower = pair
    leader.send_reader_state("train", 0, 0)
    leader.send_reader_state("eval", 3, 1)
    leader.send_reader_state("train", 1, 128)
    leader.terminate_reader("train")
    assert follower.recv_reader_state("train") == ReaderState("train", 0, 0)
    assert follower.recv_reader_state("train") == ReaderState("train", 1, 128)
    assert follower.recv_reader_state("train") is None
    assert follower.recv_reader_state("eval") == ReaderState("eval", 3, 1)
    with pytest.raises(OperationTimeoutError, match=r"recv_reader_state 'eval' at step 0"):
        follower.recv_reader_state("eval", timeout_ms=50)


@pytest.mark.parametrize("call", [
    lambda leader, follower: follower.send_ckpt_version(1),
    lambda leader, follower: follower.send_reader_state("train", 0, 0),
    lambda leader, follower: follower.terminate_reader("train"),
    lambda leader, follower: leader.recv_ckpt_version(),
    lambda leader, follower: leader.recv_reader_state("train"),
])
def test_wrong_side_is_a_config_error(pair, call) -> None:
    with pytest.raises(ConfigError, match=r"is for the (leader|follower) only"):
        call(*pair)


def test_bad_control_values_are_refused(pair) -> None:
    leader, _ = pair
    with pytest.raises(ConfigError, match="checkpoint version"):
        leader.send_ckpt_version(-1)
    with pytest.raises(ConfigError, match="sample_index"):
        leader.send_reader_state("train", 0, -5)
