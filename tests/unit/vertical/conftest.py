"""Two communicators over the in-memory link, initialized concurrently (as two processes)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from openfl_like.vertical import Communicator
from openfl_like.vertical.memory_link import memory_pair


def make_pair(**kwargs: Any) -> tuple[Communicator, Communicator]:
    pair_kwargs = {k: kwargs.pop(k) for k in ("delay_s", "drop") if k in kwargs}
    lead_end, follow_end = memory_pair(("shop", "bank"), **pair_kwargs)
    options: dict[str, Any] = dict(session_id="test-session", scan_interval_ms=20,
                                   default_timeout_ms=5_000, connect_timeout_ms=5_000)
    options.update(kwargs)
    leader = Communicator.over_link("leader", lead_end, name="shop", peer_name="bank", **options)
    follower = Communicator.over_link("follower", follow_end, name="bank", peer_name="shop",
                                      **options)
    return leader, follower


def start_both(leader: Communicator, follower: Communicator) -> None:
    errors: list[BaseException] = []

    def init(comm: Communicator) -> None:
        try:
            comm.initialize()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=init, args=(c,)) for c in (leader, follower)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors, errors


@pytest.fixture
def pair() -> Iterator[tuple[Communicator, Communicator]]:
    leader, follower = make_pair()
    start_both(leader, follower)
    yield leader, follower
    leader.shutdown("test over")
    follower.shutdown("test over")
