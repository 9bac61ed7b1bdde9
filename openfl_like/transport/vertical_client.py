"""VerticalPeerClient: one vertical party's wire to its peer's server (implements the
communicator's ``vertical.link.PeerLink``).

One channel, mutual TLS with our PKI; the peer's server certificate must name the host dialled,
or ``target_name_override`` when set (``grpc.ssl_target_name_override``, only then). A
certificate that names neither is a ``ConfigError`` at once, naming both (``hostname``).

Sends: a tensor of at most ``chunk_bytes`` is one ``PutTensor`` call (the per-step fast path),
and so is a control message: its first attempt is a blocking grpc call in the sender's thread,
bounded by the send's timeout (and ended by ``close()``), so ``send_tensor`` returns an
already-decided :class:`PendingSend` unless the attempt is to be retried. Why: on an idle
channel a grpc future starts grpc's channel thread anew for every call (measured ~0.3 ms a
send under load), where a blocking call polls its own completion queue. A larger tensor is a
``StreamTensor`` call of ``chunk_bytes`` pieces, sliced from the array (views) and copied once
into each message, issued as a grpc future. Each send returns a :class:`PendingSend`:

- ``result()`` blocks until the peer acknowledged, checks the reply's header (from the peer we
  dialled, to us, in our session, from the peer's role), and raises the project error of a
  refusal (``status.error_from_rpc``: ``AuthError``, ``PermissionDeniedError``,
  ``PlanMismatchError``, ``ProtocolError``...). UNAVAILABLE (peer down, restarting) and
  RESOURCE_EXHAUSTED (its stream cap) are retried with backoff within the send's timeout; the
  retries run in the thread waiting in ``result()`` (the communicator always waits). Past the
  timeout: ``OperationTimeoutError`` naming the operation, tensor, step and peer.
- ``cancel()`` abandons the send: ``result()`` raises ``SendCancelledError`` at once (a
  ``ConnectionFailedError``); a send that has already succeeded stays successful.
- ``close()`` closes the channel; pending sends then raise ``SendCancelledError``, and new ones
  are refused with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import numpy as np

from openfl_like.core.errors import (
    AuthError,
    ConfigError,
    ConnectionFailedError,
    OpenflLikeError,
    PlanMismatchError,
    ProtocolError,
    ResourceLimitError,
)
from openfl_like.core.logging import get_logger
from openfl_like.core.vertical import Control, Hello, PartyRole
from openfl_like.protocol import vertical_pb2 as pb
from openfl_like.protocol.chunking import split_bytes
from openfl_like.protocol.codec import as_wire_array, dtype_name, raw_bytes
from openfl_like.protocol.vertical_convert import control_to_pb, header_pb, hello_to_pb
from openfl_like.protocol.vertical_service import (
    VERTICAL_RPCS,
    encode_meta,
    encode_piece,
    encode_put,
)
from openfl_like.transport.aggregator_client import describe_failure
from openfl_like.transport.credentials import TlsFiles, channel_credentials
from openfl_like.transport.hostname import hostname_mismatch_error, is_hostname_mismatch
from openfl_like.transport.server import INSECURE_WARNING
from openfl_like.transport.status import error_from_rpc
from openfl_like.transport.vertical_pending import (
    RETRIED_CODES,
    PendingSend,
    SendCancelledError,
    is_oversize,
)
from openfl_like.transport.vertical_settings import VerticalTransportSettings

_log = get_logger(__name__)



def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); ConfigError naming the address."""
    host, sep, port = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"peer address {address!r}: expected host:port")
    return host, int(port)


def channel_options(settings: VerticalTransportSettings) -> list[tuple[str, int | str]]:
    backoff_ms = int(settings.retry_initial_seconds * 1000)
    options: list[tuple[str, int | str]] = [
        ("grpc.max_send_message_length", settings.client_max_send_bytes),
        ("grpc.max_receive_message_length", settings.client_max_recv_bytes),
        ("grpc.keepalive_time_ms", int(settings.keepalive_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        # reconnect quickly when the peer comes (back) up; our retries bound the total time
        ("grpc.initial_reconnect_backoff_ms", backoff_ms),
        ("grpc.min_reconnect_backoff_ms", backoff_ms),
        ("grpc.max_reconnect_backoff_ms", int(settings.retry_max_seconds * 1000)),
    ]
    if settings.target_name_override:
        options.append(("grpc.ssl_target_name_override", settings.target_name_override))
    return options


class VerticalPeerClient:
    """Sends to one peer party; see the module docstring."""

    def __init__(
        self,
        peer_addr: str,
        *,
        me: str,
        peer: str,
        session_id: str,
        my_role: PartyRole,
        tls_files: TlsFiles | None,
        settings: VerticalTransportSettings | None = None,
        client_threads: int = 2,
    ) -> None:
        self.settings = settings or VerticalTransportSettings()
        self.peer_addr = peer_addr
        self._host, self._port = split_address(peer_addr)
        self.me, self.peer, self.session_id = me, peer, session_id
        self.my_role = PartyRole(my_role)
        # how many sends the caller runs at once (its pool); grpc multiplexes them on one
        # channel, so the client itself needs no threads
        self.client_threads = client_threads
        self._tls_files = self.settings.tls_files(tls_files) if tls_files is not None else None
        self._header = header_pb(me, peer, session_id, self.my_role)
        self._header_bytes = self._header.SerializeToString()
        options = channel_options(self.settings)
        if self._tls_files is None:
            _log.warning("vertical link to %s: %s", peer, INSECURE_WARNING)
            self._channel = grpc.insecure_channel(peer_addr, options=options)
        else:
            self._channel = grpc.secure_channel(
                peer_addr, channel_credentials(self._tls_files), options)
        self.closed = False
        reply = pb.PeerReply.FromString
        self._connect = self._channel.unary_unary(
            VERTICAL_RPCS["Connect"].path, request_serializer=None, response_deserializer=reply)
        self._put = self._channel.unary_unary(
            VERTICAL_RPCS["PutTensor"].path, request_serializer=None,
            response_deserializer=reply)
        self._stream = self._channel.stream_unary(
            VERTICAL_RPCS["StreamTensor"].path, request_serializer=None,
            response_deserializer=reply)
        self._control = self._channel.unary_unary(
            VERTICAL_RPCS["PutControl"].path, request_serializer=None,
            response_deserializer=reply)

    # -- PeerLink --------------------------------------------------------------------------

    def connect(self, hello: Hello, timeout_s: float) -> None:
        """One Connect call. ``ConnectionFailedError`` when the peer is not up (the caller
        retries); ``ConfigError`` when its certificate does not name the host dialled; the
        project error of its refusal (``PlanMismatchError``, ``AuthError``...) otherwise."""
        self._check_open("connect")
        request = hello_to_pb(hello).SerializeToString()
        try:
            reply = self._connect(request, timeout=timeout_s)
        except grpc.RpcError as error:
            raise self.error_of(error, "connect") from None
        self.check_reply(reply, "connect")

    def send_tensor(self, name: str, step: int, array: np.ndarray, timeout_s: float
                    ) -> PendingSend:
        """One ``PutTensor`` when the tensor fits in ``chunk_bytes``, else a stream.
        ``ProtocolError`` at once for a dtype we do not carry (object, str...)."""
        tensor = _WireTensor.of(name, step, array)
        if len(tensor.data) <= self.settings.chunk_bytes:
            return self._put_tensor(tensor, timeout_s)
        return self._stream_tensor(tensor, timeout_s)

    def put_tensor(self, name: str, step: int, array: np.ndarray, timeout_s: float
                   ) -> PendingSend:
        """Send as one ``PutTensor`` message, whatever its size (the peer's message limit
        applies)."""
        return self._put_tensor(_WireTensor.of(name, step, array), timeout_s)

    def stream_tensor(self, name: str, step: int, array: np.ndarray, timeout_s: float
                      ) -> PendingSend:
        """Send as a ``StreamTensor`` of ``chunk_bytes`` pieces, whatever its size."""
        return self._stream_tensor(_WireTensor.of(name, step, array), timeout_s)

    def send_control(self, control: Control, timeout_s: float) -> PendingSend:
        request = control_to_pb(control, self._header).SerializeToString()
        what = f"send {control.kind.value} #{control.seq}"
        return self._pending(what, timeout_s,
                             lambda remaining: self._control.future(request, timeout=remaining),
                             lambda remaining: self._control(request, timeout=remaining))

    def close(self) -> None:
        """Close the channel: pending sends fail with SendCancelledError, new ones too."""
        self.closed = True
        self._channel.close()

    # -- internals -------------------------------------------------------------------------

    def _put_tensor(self, tensor: _WireTensor, timeout_s: float) -> PendingSend:
        request = encode_put(self._header_bytes, tensor.meta, tensor.data)
        return self._pending(
            tensor.what, timeout_s,
            lambda remaining: self._put.future(request, timeout=remaining),
            lambda remaining: self._put(request, timeout=remaining))

    def _stream_tensor(self, tensor: _WireTensor, timeout_s: float) -> PendingSend:
        meta, view = tensor.meta, tensor.data
        chunk = self.settings.chunk_bytes
        header = self._header_bytes

        def pieces() -> Iterator[bytes]:  # a fresh generator per attempt: a retry re-sends all
            slices = split_bytes(view, chunk) if len(view) else iter((b"",))
            for index, piece in enumerate(slices):
                yield encode_piece(header, meta, piece) if index == 0 \
                    else encode_piece(None, None, piece)

        return self._pending(
            tensor.what, timeout_s,
            lambda remaining: self._stream.future(pieces(), timeout=remaining))

    def _pending(self, what: str, timeout_s: float, issue: Callable[[float], grpc.Future],
                 blocking: Callable[[float], pb.PeerReply] | None = None) -> PendingSend:
        self._check_open(what)
        return PendingSend(self, what, timeout_s, issue, blocking)

    def _check_open(self, what: str) -> None:
        if self.closed:
            raise SendCancelledError(f"{what}: the link to peer {self.peer} is closed")

    def check_reply(self, reply: pb.PeerReply, what: str) -> None:
        """The reply comes from the peer we dialled, to us, in our session, from its role."""
        header = reply.header if reply.HasField("header") else None
        if header is None or not header.sender:
            raise ProtocolError(f"{what}: the peer's reply has no header")
        if header.sender != self.peer:
            raise AuthError(f"{what}: the reply comes from {header.sender!r}, not from the "
                            f"peer {self.peer!r} we dialled at {self.peer_addr}")
        if header.receiver != self.me:
            raise AuthError(f"{what}: the reply is addressed to {header.receiver!r}, not to "
                            f"us ({self.me!r})")
        if header.session_id != self.session_id:
            raise PlanMismatchError(f"{what}: the peer is in session {header.session_id!r}, "
                                    f"we are in {self.session_id!r}")
        if header.sender_role != self.my_role.peer.value:
            raise PlanMismatchError(f"{what}: the peer is the {header.sender_role or '(none)'}"
                                    f", we are the {self.my_role.value}")

    def error_of(self, error: grpc.RpcError, what: str) -> OpenflLikeError:
        """The project error for a failed call (see the module docstring)."""
        code = error.code() if hasattr(error, "code") else None
        if is_hostname_mismatch(error):
            return hostname_mismatch_error(
                error, what=what, server=f"peer {self.peer}", host=self._host, port=self._port,
                dialled=self.settings.target_name_override or self._host,
                tls_files=self._tls_files)
        if code is grpc.StatusCode.CANCELLED and self.closed:
            return SendCancelledError(f"{what}: the link to peer {self.peer} was closed")
        details = (error.details() if hasattr(error, "details") else "") or ""
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED and is_oversize(details):
            return ResourceLimitError(
                f"{what}: a message over the size limit ({details}); our limit to send is "
                f"{self.settings.client_max_send_bytes} bytes (FX_VERTICAL_CLIENT_MAX_SEND_BYTES),"
                f" the peer's to receive its FX_VERTICAL_SERVER_MAX_RECV_BYTES")
        if code is grpc.StatusCode.UNAVAILABLE:
            described = describe_failure(error, self.peer_addr, server=f"peer {self.peer}")
            if _is_untrusted_certificate(details):
                # Another CA (or an expired certificate) does not heal on retry: fatal at once.
                return AuthError(f"{what}: {described}")
            return ConnectionFailedError(f"{what}: {described}")
        return error_from_rpc(error, what=what)

    def retryable(self, error: grpc.RpcError) -> bool:
        code = error.code() if hasattr(error, "code") else None
        if code not in RETRIED_CODES or is_hostname_mismatch(error) or self.closed:
            return False
        details = (error.details() if hasattr(error, "details") else "") or ""
        return not is_oversize(details) and not _is_untrusted_certificate(details)


def _is_untrusted_certificate(details: str) -> bool:
    """grpc's UNAVAILABLE for a peer certificate that does not verify against our CA bundle."""
    text = details.lower()
    return "certificate_verify_failed" in text or "certificate verify failed" in text


@dataclass(frozen=True)
class _WireTensor:
    """A tensor as it goes on the wire: serialized TensorMeta and a flat byte view (no copy
    for a C-contiguous little-endian array)."""

    what: str
    meta: bytes
    data: memoryview

    @classmethod
    def of(cls, name: str, step: int, array: np.ndarray) -> _WireTensor:
        wire = as_wire_array(np.asarray(array))
        meta = encode_meta(name, int(step), dtype_name(wire.dtype), wire.shape, wire.nbytes)
        return cls(f"send {name!r} at step {step}", meta, raw_bytes(wire))



__all__ = ["PendingSend", "SendCancelledError", "VerticalPeerClient", "channel_options",
           "split_address"]
