"""The status's estimate of the time a round (and the federation) may still take."""

from __future__ import annotations

from openfl_like.federation.status_view import estimate

HISTORY = [{"duration_seconds": d} for d in (10.0, 12.0, 50.0)]  # one slow round


def test_median_minus_the_open_round_s_age() -> None:
    got = estimate(HISTORY, round_age=4.0, to_deadline=None, rounds_left=3, finished=False)
    assert got == {"median_round_seconds": 12.0, "rounds_measured": 3,
                   "round_remaining_seconds": 8.0, "federation_remaining_seconds": 32.0}


def test_never_past_the_deadline_nor_below_zero() -> None:
    capped = estimate(HISTORY, round_age=4.0, to_deadline=3.0, rounds_left=1, finished=False)
    late = estimate(HISTORY, round_age=40.0, to_deadline=None, rounds_left=1, finished=False)
    assert capped["round_remaining_seconds"] == 3.0
    assert late["round_remaining_seconds"] == 0.0


def test_unknown_before_the_first_close_and_after_the_end() -> None:
    first = estimate([], round_age=1.0, to_deadline=None, rounds_left=5, finished=False)
    ended = estimate(HISTORY, round_age=1.0, to_deadline=None, rounds_left=0, finished=True)
    assert first["round_remaining_seconds"] is None and first["median_round_seconds"] is None
    assert ended["round_remaining_seconds"] is None
    assert ended["federation_remaining_seconds"] is None
