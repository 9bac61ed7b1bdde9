"""Bytes of uploads in flight per participant: counted while streaming, gone when done."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from openfl_like.transport.inflight import UploadsInFlight


@dataclass(frozen=True)
class Piece:
    data: bytes


def test_counts_while_streaming_and_forgets_when_done() -> None:
    now = [100.0]
    meter = UploadsInFlight(clock=lambda: now[0])
    stream = meter.count("col1", iter([Piece(b"x" * 10), Piece(b"y" * 5)]))
    assert meter.snapshot() == {}  # nothing read yet: nothing in flight
    next(stream)
    now[0] = 102.5
    assert meter.snapshot() == {"col1": {"bytes": 10, "seconds": 2.5}}
    next(stream)
    assert meter.snapshot()["col1"]["bytes"] == 15
    assert list(stream) == []
    assert meter.snapshot() == {}


def test_two_uploads_of_one_participant_add_up_and_a_broken_one_is_released() -> None:
    meter = UploadsInFlight()

    def broken():
        yield Piece(b"a" * 7)
        raise OSError("client went away")

    first = meter.count("col1", iter([Piece(b"b" * 3), Piece(b"c")]))
    second = meter.count("col1", broken())
    next(first)
    next(second)
    assert meter.snapshot()["col1"]["bytes"] == 10
    with pytest.raises(OSError):
        next(second)
    assert meter.snapshot()["col1"]["bytes"] == 10  # the first upload is still running
    list(first)
    assert meter.snapshot() == {}
