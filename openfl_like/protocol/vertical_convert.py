"""vertical.proto messages <-> the plain messages of ``core.vertical``, both directions.

Parsing never trusts the peer: an unknown role or control kind, a negative sequence number or an
empty tensor name is a ``ProtocolError`` (INVALID_ARGUMENT on the server). The header is checked
by the transport (``transport.vertical_server``), not here.
"""

from __future__ import annotations

from openfl_like.core.errors import ProtocolError
from openfl_like.core.vertical import Control, ControlKind, Hello, PartyRole
from openfl_like.protocol import vertical_pb2 as pb

# Names and reasons are for logs and dictionaries, never for megabytes.
MAX_TEXT = 4096


def header_pb(sender: str, receiver: str, session_id: str, role: PartyRole) -> pb.PeerHeader:
    return pb.PeerHeader(sender=sender, receiver=receiver, session_id=session_id,
                         sender_role=role.value)


def role_from_wire(value: str) -> PartyRole:
    try:
        return PartyRole(value)
    except ValueError:
        raise ProtocolError(f"unknown sender role {value!r} (expected leader or follower)"
                            ) from None


def hello_to_pb(hello: Hello) -> pb.ConnectRequest:
    return pb.ConnectRequest(
        header=header_pb(hello.sender, hello.receiver, hello.session_id, hello.sender_role),
        protocol_version=hello.protocol_version, step=hello.step,
    )


def hello_from_pb(request: pb.ConnectRequest) -> Hello:
    header = request.header
    return Hello(
        session_id=header.session_id, sender=header.sender,
        sender_role=role_from_wire(header.sender_role), receiver=header.receiver,
        protocol_version=int(request.protocol_version), step=int(request.step),
    )


def control_to_pb(control: Control, header: pb.PeerHeader) -> pb.ControlMessage:
    return pb.ControlMessage(
        header=header, seq=control.seq, kind=control.kind.value, name=control.name,
        version=control.version, block_id=control.block_id,
        sample_index=control.sample_index, reason=control.reason,
    )


def control_from_pb(message: pb.ControlMessage) -> Control:
    try:
        kind = ControlKind(message.kind)
    except ValueError:
        known = ", ".join(k.value for k in ControlKind)
        raise ProtocolError(f"unknown control kind {message.kind!r} (known: {known})") from None
    if message.seq < 1:
        raise ProtocolError(f"control {kind.value}: seq must be >= 1, got {message.seq}")
    for field in ("name", "reason"):
        if len(getattr(message, field)) > MAX_TEXT:
            raise ProtocolError(f"control {kind.value}: {field} longer than {MAX_TEXT} chars")
    return Control(
        seq=int(message.seq), kind=kind, name=message.name, version=int(message.version),
        block_id=int(message.block_id), sample_index=int(message.sample_index),
        reason=message.reason,
    )
