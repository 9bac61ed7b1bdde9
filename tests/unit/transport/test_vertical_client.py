"""VerticalPeerClient without a server: addresses, channel options, reply header checks."""

from __future__ import annotations

import pytest

from openfl_like.core.errors import AuthError, ConfigError, PlanMismatchError, ProtocolError
from openfl_like.core.vertical import PartyRole
from openfl_like.protocol import vertical_pb2 as pb
from openfl_like.protocol.vertical_convert import header_pb
from openfl_like.transport.vertical_client import (
    VerticalPeerClient,
    channel_options,
    split_address,
)
from openfl_like.transport.vertical_settings import VerticalTransportSettings


def test_split_address() -> None:
    assert split_address("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert split_address("[::1]:7") == ("::1", 7)
    assert split_address("bank.example:443") == ("bank.example", 443)
    for bad in ("bank", ":80", "bank:", "bank:http", "bank:70000"):
        with pytest.raises(ConfigError, match="expected host:port"):
            split_address(bad)


def test_target_name_override_only_when_set() -> None:
    names = [k for k, _ in channel_options(VerticalTransportSettings())]
    assert "grpc.ssl_target_name_override" not in names
    options = dict(channel_options(VerticalTransportSettings(target_name_override="bank.ex",
                                                             client_max_send_bytes=9 << 20)))
    assert options["grpc.ssl_target_name_override"] == "bank.ex"
    assert options["grpc.max_send_message_length"] == 9 << 20


@pytest.mark.parametrize(("header", "error", "reason"), [
    (None, ProtocolError, "no header"),
    (header_pb("mallory", "shop", "s1", PartyRole.FOLLOWER), AuthError, "comes from 'mallory'"),
    (header_pb("bank", "eve", "s1", PartyRole.FOLLOWER), AuthError, "addressed to 'eve'"),
    (header_pb("bank", "shop", "s2", PartyRole.FOLLOWER), PlanMismatchError, "session 's2'"),
    (header_pb("bank", "shop", "s1", PartyRole.LEADER), PlanMismatchError, "peer is the leader"),
])
def test_replies_must_come_from_the_peer_to_us_in_our_session(header, error, reason) -> None:
    client = VerticalPeerClient("127.0.0.1:1", me="shop", peer="bank", session_id="s1",
                                my_role=PartyRole.LEADER, tls_files=None)
    try:
        client.check_reply(pb.PeerReply(header=header_pb("bank", "shop", "s1",
                                                          PartyRole.FOLLOWER)), "send")
        with pytest.raises(error, match=reason):
            client.check_reply(pb.PeerReply(header=header) if header else pb.PeerReply(), "send")
    finally:
        client.close()
