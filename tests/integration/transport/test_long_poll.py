"""GetTasks long-polls: sliced on the server so an abandoned poll frees its thread promptly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc
import pytest

from openfl_like.core.errors import OpenflLikeError
from openfl_like.core.messages import PollStatus
from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import base_pb2
from openfl_like.protocol.service import AGGREGATOR_RPCS
from openfl_like.transport.credentials import channel_credentials

from .conftest import AGGREGATOR, FEDERATION, fast_settings, start_aggregator

SLICE = 0.2


def wait_for(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``condition()`` holds; fails the test after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
def sliced(pki, handler):
    settings = fast_settings(long_poll_seconds=30.0, long_poll_slice_seconds=SLICE)
    handle = start_aggregator(pki, handler, settings=settings)
    try:
        yield handle
    finally:
        handle.running.stop(0)


def test_cancelled_long_poll_releases_the_server_thread(pki, handler, sliced):
    # Prepare: a raw call we can cancel, as a collaborator does when it shuts down
    rpc = AGGREGATOR_RPCS["GetTasks"]
    header = base_pb2.MessageHeader(sender="col-a", receiver=AGGREGATOR, federation_uuid=FEDERATION)
    request = pb.GetTasksRequest(header=header, wait_seconds=30.0)
    with grpc.secure_channel(
        f"127.0.0.1:{sliced.port}", channel_credentials(pki.files("col-a"))
    ) as channel:
        call = channel.unary_unary(
            rpc.path, request_serializer=rpc.serialize_request,
            response_deserializer=rpc.deserialize_response,
        ).future(request, timeout=60)
        wait_for(lambda: handler.parked == 1, timeout=5)

        # Execute
        call.cancel()
        released_after = wait_for(lambda: handler.parked == 0, timeout=5)

    # Assert: freed within about one slice, not after the 30 s poll
    assert call.cancelled()
    assert released_after < SLICE + 0.5
    time.sleep(3 * SLICE)
    assert handler.parked == 0  # and not parked again by a later slice


def test_disconnected_collaborator_releases_the_server_thread(handler, sliced, make_client):
    client = make_client("col-a", port=sliced.port,
                         settings=fast_settings(long_poll_seconds=30.0))
    outcome: list[object] = []

    def poll() -> None:
        try:
            outcome.append(client.get_tasks(wait_seconds=30.0))
        except OpenflLikeError as exc:
            outcome.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    wait_for(lambda: handler.parked == 1, timeout=5)

    client.disconnect()  # closes the channel under the running call
    released_after = wait_for(lambda: handler.parked == 0, timeout=5)
    poller.join(5)

    assert released_after < SLICE + 0.5
    assert not poller.is_alive() and isinstance(outcome[0], OpenflLikeError)


def test_sliced_poll_still_waits_the_full_time_and_wakes_at_once(handler, sliced, make_client):
    client = make_client("col-a", port=sliced.port)

    started = time.monotonic()
    idle = client.get_tasks(wait_seconds=1.0)
    waited = time.monotonic() - started
    calls_for_idle = handler.get_tasks_calls
    threading.Timer(0.7, handler.work.set).start()
    started = time.monotonic()
    busy = client.get_tasks(wait_seconds=5.0)
    woke_after = time.monotonic() - started

    assert idle.status is PollStatus.WAIT and 0.95 <= waited < 2.0
    assert calls_for_idle >= 1.0 / SLICE - 1  # served as slices of the caller's one wait
    assert busy.status is PollStatus.WORK and 0.6 < woke_after < 1.0


def test_handler_answering_wait_at_once_is_not_polled_in_a_loop(handler, sliced, make_client):
    handler.wait_now = True
    client = make_client("col-a", port=sliced.port)

    started = time.monotonic()
    reply = client.get_tasks(wait_seconds=10.0)

    assert reply.status is PollStatus.WAIT
    assert time.monotonic() - started < 1.0
    assert handler.get_tasks_calls == 1
