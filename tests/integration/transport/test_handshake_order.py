"""The Handshake compares the plans' settings before the federation ids (identity.py, part 5):
a collaborator with another plan learns which settings differ; other RPCs keep the id check."""

from __future__ import annotations

import grpc
import pytest

from openfl_like.core.errors import PlanMismatchError

Code = grpc.StatusCode


def test_another_plan_is_told_the_settings_not_the_ids(make_client):
    # Prepare: another plan means another derived federation id as well
    client = make_client("col-a", federation="fed-other")
    # Execute
    with pytest.raises(PlanMismatchError) as caught:
        client.handshake("digest-2", {"rounds": "10", "lr": "0.5"})
    # Assert: the handler's comparison answered, naming the setting, not the ids
    assert caught.value.status_code is Code.FAILED_PRECONDITION
    assert "lr" in str(caught.value) and "fed-other" not in str(caught.value)


def test_same_settings_under_another_federation_id_is_still_refused(make_client):
    client = make_client("col-a", federation="fed-other")
    with pytest.raises(PlanMismatchError, match="federation 'fed-other' is not") as caught:
        client.handshake("digest-1", {"rounds": "10", "lr": "0.1"})
    assert caught.value.status_code is Code.FAILED_PRECONDITION


def test_other_rpcs_check_the_federation_id_first(make_client, handler):
    client = make_client("col-a", federation="fed-other")
    with pytest.raises(PlanMismatchError, match="federation 'fed-other' is not"):
        client.heartbeat()


def test_a_refused_handshake_does_not_hold_the_name(make_client):
    # Prepare: a process of col-a with another plan is refused...
    with pytest.raises(PlanMismatchError):
        make_client("col-a", federation="fed-other").handshake("digest-2", {"rounds": "5"})
    # Execute: ...and the right process of col-a (another instance) comes at once
    reply = make_client("col-a").handshake("digest-1", {"rounds": "10", "lr": "0.1"})
    # Assert: not refused as a second live instance of col-a
    assert reply.round_number == 3
