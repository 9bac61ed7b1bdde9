"""VerticalPeerServer: one vertical party's gRPC server. Checks who calls, decodes, then hands
the peer's messages to the communicator's inbox (``vertical_handlers.VerticalHandler``).

Every call, before anything the caller chose to send is read:

1. the TLS peer certificate: present, not revoked (the PKI store's CRL, re-read when it
   changes), valid now, of role ``party`` (``identity.HeaderChecker.check_peer``), and its CN is
   the configured peer name (PERMISSION_DENIED "certificate 'bob' is not the configured peer
   'alice'"); a certificate of another CA never gets here (the TLS handshake refuses it);
2. a stream takes one of ``max_streams`` slots (RESOURCE_EXHAUSTED beyond, which the client
   retries) before its first piece is awaited; the first piece must come within
   ``first_piece_seconds`` and each later one within ``piece_seconds``, else the call ends with
   DEADLINE_EXCEEDED and its worker is free again (``watchdog``);
3. the request is parsed (garbage: INVALID_ARGUMENT) and its header checked: ``sender`` is the
   certificate CN (UNAUTHENTICATED); ``receiver`` is this party, ``session_id`` is ours and
   ``sender_role`` is the peer's role (FAILED_PRECONDITION naming both values);
4. a tensor's metadata (name, dtype, shape, nbytes) is checked and its size held against
   ``max_tensor_bytes`` before a byte is buffered (INVALID_ARGUMENT); a stream carries exactly
   one tensor.

Only then is the handler called; its errors become status codes (``status.translate_errors``),
except that a handler that cannot take messages any more (a ``ConnectionFailedError`` such as
``CommunicatorClosedError``) answers UNAVAILABLE, as a stopped server would.
Without TLS there is no certificate: a loud warning at start, and the header's sender is
trusted if it is the configured peer name.

What a peer can hold: ``server_threads`` worker threads, of which at most ``max_streams``
(and at most ``server_threads - 1``) sit in streams; at most ``2 x server_threads`` calls
running or queued (grpc refuses more with RESOURCE_EXHAUSTED); one tensor buffer per stream.

Tensors of a ``PutTensor`` reach the handler as read-only arrays over the received message (no
copy); streamed ones as writable arrays over their own buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import grpc

from openfl_like.core.errors import (
    AuthError,
    ConnectionFailedError,
    DeadlineExceededError,
    PermissionDeniedError,
    PlanMismatchError,
    ProtocolError,
    UnavailableError,
)
from openfl_like.core.ids import Role
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import NamedTensor
from openfl_like.core.vertical import PROTOCOL_VERSION, PartyRole, StepTensor
from openfl_like.protocol import base_pb2
from openfl_like.protocol import vertical_pb2 as pb
from openfl_like.protocol.chunking import TensorJoiner, layout_of
from openfl_like.protocol.codec import TensorLayout
from openfl_like.protocol.vertical_convert import (
    MAX_TEXT,
    control_from_pb,
    header_pb,
    hello_from_pb,
)
from openfl_like.protocol.vertical_service import (
    VERTICAL_RPCS,
    VERTICAL_SERVICE,
    TensorMessage,
    decode_piece,
    decode_put,
)
from openfl_like.transport.credentials import TlsFiles, server_credentials
from openfl_like.transport.health import HealthState
from openfl_like.transport.identity import HeaderChecker, PeerIdentity
from openfl_like.transport.limits import PeerSlots
from openfl_like.transport.server import RunningServer, start_server
from openfl_like.transport.service_server import revocation_checker
from openfl_like.transport.settings import TransportSettings
from openfl_like.transport.status import translate_errors
from openfl_like.transport.vertical_handlers import VerticalHandler
from openfl_like.transport.vertical_settings import VerticalTransportSettings
from openfl_like.transport.watchdog import Watchdog, expire_call

_log = get_logger(__name__)

INSECURE_VERTICAL_WARNING = (
    "VERTICAL PARTY %s: TLS IS OFF. Traffic with %s is unencrypted and unauthenticated; any "
    "caller naming itself %r in a header is believed. Use only for local experiments."
)
_STREAMS_KEY = "streams"  # one peer: every stream counts against one cap
_LAYOUTS_KEPT = 256


def server_options(settings: VerticalTransportSettings) -> list[tuple[str, int | str]]:
    keepalive_ms = int(settings.keepalive_seconds * 1000)
    return [
        ("grpc.max_receive_message_length", settings.server_max_recv_bytes),
        ("grpc.max_send_message_length", settings.server_max_send_bytes),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", keepalive_ms // 2),
        ("grpc.http2.max_ping_strikes", 0),
        ("grpc.so_reuseport", 0),  # a second party on the same port must fail, not share it
    ]


class VerticalPeerServer:
    """The VerticalPeer service over a handler; :meth:`start` puts it on the network."""

    def __init__(
        self,
        handler: VerticalHandler,
        *,
        me: str,
        peer: str,
        session_id: str,
        my_role: PartyRole,
        tls_files: TlsFiles | None,
        settings: VerticalTransportSettings | None = None,
        server_threads: int = 4,
    ) -> None:
        if server_threads < 1:
            raise ValueError(f"server_threads must be >= 1, got {server_threads}")
        self.settings = settings or VerticalTransportSettings()
        self.me, self.peer, self.session_id = me, peer, session_id
        self.my_role = PartyRole(my_role)
        self.server_threads = server_threads
        self._handler = handler
        # tls_files None: TLS off. Given: the settings' cert/key/CA overrides apply on top.
        self._tls_files = self.settings.tls_files(tls_files) if tls_files is not None else None
        self.tls = self._tls_files is not None
        self._checker = HeaderChecker(
            server_name=me, federation_uuid=session_id, is_authorized=lambda n: n == peer,
            revocation=revocation_checker(self._tls_files), tls=self.tls, role=Role.PARTY,
        )
        self.streams = PeerSlots("tensor streams",
                                 min(self.settings.max_streams, max(1, server_threads - 1)))
        self._watchdog = Watchdog()
        self.health = HealthState([VERTICAL_SERVICE])
        self._layouts: dict[tuple[str, str, tuple[int, ...], int], TensorLayout] = {}
        self._reply = pb.PeerReply(
            header=header_pb(me, peer, session_id, self.my_role)).SerializeToString()

    # -- network ---------------------------------------------------------------------------

    def rpc_handler(self) -> grpc.GenericRpcHandler:
        methods = {
            "Connect": grpc.unary_unary_rpc_method_handler(self.Connect),
            "PutTensor": grpc.unary_unary_rpc_method_handler(self.PutTensor),
            "StreamTensor": grpc.stream_unary_rpc_method_handler(self.StreamTensor),
            "PutControl": grpc.unary_unary_rpc_method_handler(self.PutControl),
        }  # raw bytes in (parsed here, after the certificate check), our reply bytes out
        return grpc.method_handlers_generic_handler(VERTICAL_SERVICE, methods)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
        """Listen on host:port (0: a free port, see ``RunningServer.port``) and serve."""
        if not self.tls:
            _log.warning(INSECURE_VERTICAL_WARNING, self.me, self.peer, self.peer)
        credentials = server_credentials(self._tls_files) if self._tls_files else None
        running = start_server(
            [self.rpc_handler()],
            settings=TransportSettings(tls=self.tls, server_workers=self.server_threads),
            credentials=credentials, host=host, port=port, health=self.health,
            options=server_options(self.settings),
            maximum_concurrent_rpcs=2 * self.server_threads,
        )
        self.health.set_serving()
        return running

    # -- checks ----------------------------------------------------------------------------

    def _caller(self, context: grpc.ServicerContext) -> PeerIdentity:
        """Check 1 of the module docstring, from the grpc context alone."""
        identity = self._checker.check_peer(context)
        if self.tls and identity.name != self.peer:
            raise PermissionDeniedError(
                f"certificate {identity.name!r} is not the configured peer {self.peer!r}")
        return identity

    def _check_header(self, header: pb.PeerHeader | None, identity: PeerIdentity) -> None:
        """Check 3 of the module docstring."""
        if header is None:
            raise AuthError("request without a header")
        sender = header.sender
        if self.tls and sender != identity.name:
            raise AuthError(f"header sender {sender!r} does not match the certificate's name "
                            f"{identity.name!r}")
        if not self.tls and sender != self.peer:
            raise PermissionDeniedError(f"sender {sender!r} is not the configured peer "
                                        f"{self.peer!r}")
        if header.receiver != self.me:
            raise PlanMismatchError(f"request is addressed to {header.receiver!r}, this party "
                                    f"is {self.me!r}")
        if header.session_id != self.session_id:
            raise PlanMismatchError(f"{sender} is in session {header.session_id!r}, this party "
                                    f"in {self.session_id!r}")
        expected = self.my_role.peer.value
        if header.sender_role != expected:
            raise PlanMismatchError(
                f"{sender} says it is the {header.sender_role or '(no role)'}, but this party "
                f"is the {self.my_role.value}, so its peer must be the {expected}")

    def _layout(self, meta: base_pb2.TensorMeta) -> TensorLayout:
        """``layout_of(meta)`` (its checks, its errors), remembered for the metadata of a
        ``PutTensor``: the per-step fast path sends the same name, dtype and shape every step.
        The layout's round number is not used (the step is read from ``meta``)."""
        key = (meta.name, meta.dtype, tuple(meta.shape), meta.nbytes)
        layout = self._layouts.get(key)
        if layout is None:
            layout = layout_of(meta, max_tensor_bytes=self.settings.max_tensor_bytes)
            if len(self._layouts) >= _LAYOUTS_KEPT:
                self._layouts.clear()  # a peer sending ever new names must not grow it
            self._layouts[key] = layout
        return layout

    def _tensor(self, message: TensorMessage) -> TensorMessage:
        if message.meta is None:
            raise ProtocolError("a tensor message without the tensor's metadata")
        if len(message.meta.name) > MAX_TEXT:
            raise ProtocolError(f"tensor name longer than {MAX_TEXT} characters")
        return message

    # -- RPCs ------------------------------------------------------------------------------

    def Connect(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        with translate_errors(context, "Connect"):
            identity = self._caller(context)  # the configured peer's certificate from here on
            request = VERTICAL_RPCS["Connect"].parse_request(raw)
            try:
                self._check_header(request.header if request.HasField("header") else None,
                                   identity)
                hello = hello_from_pb(request)
                if hello.protocol_version != PROTOCOL_VERSION:
                    raise PlanMismatchError(
                        f"{hello.sender} speaks vertical protocol version "
                        f"{hello.protocol_version}, this party {PROTOCOL_VERSION}")
                with _peer_gone_is_unavailable():
                    self._handler.on_connect(hello)
            except PlanMismatchError as error:
                self._handler.on_refused(error)  # the same disagreement holds both ways
                raise
            return self._reply

    def PutTensor(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        with translate_errors(context, "PutTensor"):
            identity = self._caller(context)
            message = decode_put(raw)
            self._check_header(message.header, identity)
            meta = self._tensor(message).meta
            assert meta is not None
            layout = self._layout(meta)
            array = layout.to_tensor(message.data).array  # checks the byte count; no copy
            try:  # (what _peer_gone_is_unavailable does, without its cost on the fast path)
                self._handler.on_tensor(StepTensor(layout.name, meta.round_number, array))
            except ConnectionFailedError as error:
                raise _unavailable(error) from None
            return self._reply

    def StreamTensor(self, pieces: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        with translate_errors(context, "StreamTensor"), ExitStack() as stack:
            identity = self._caller(context)
            stack.enter_context(self.streams.hold(_STREAMS_KEY, self.peer))
            settings = self.settings
            raw = self._next(pieces, context, settings.first_piece_seconds, "first piece")
            if raw is None:
                raise ProtocolError("empty stream: the first piece must carry the header")
            first = decode_piece(raw)
            self._check_header(first.header, identity)
            joiner = TensorJoiner(max_tensor_bytes=settings.max_tensor_bytes)
            tensor = joiner.feed(self._tensor(first).chunk)  # checks the layout, then buffers
            while tensor is None:
                raw = self._next(pieces, context, settings.piece_seconds, "next piece")
                if raw is None:
                    joiner.finish()  # raises: truncated
                    raise AssertionError("unreachable")  # pragma: no cover
                tensor = joiner.feed(_more(decode_piece(raw)).chunk)
            if self._next(pieces, context, settings.piece_seconds, "end of stream") is not None:
                raise ProtocolError(f"one tensor per stream: more pieces after tensor "
                                    f"{tensor.name!r} was complete")
            self._deliver(tensor)
            return self._reply

    def PutControl(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        with translate_errors(context, "PutControl"):
            identity = self._caller(context)
            request = VERTICAL_RPCS["PutControl"].parse_request(raw)
            self._check_header(request.header if request.HasField("header") else None,
                               identity)
            control = control_from_pb(request)
            with _peer_gone_is_unavailable():
                self._handler.on_control(control)
            return self._reply

    def _deliver(self, tensor: NamedTensor) -> None:
        with _peer_gone_is_unavailable():
            self._handler.on_tensor(StepTensor(tensor.name, tensor.round_number, tensor.array))

    def _next(self, pieces: Iterator[bytes], context: grpc.ServicerContext, seconds: float,
              what: str) -> bytes | None:
        """The stream's next message (None at its end), or DeadlineExceededError when it does
        not come within ``seconds``: the watchdog ends the call, which wakes the read."""
        late = f"no {what} of the tensor stream within {seconds:g} s"
        alarm = self._watchdog.arm(seconds, lambda: expire_call(context, late))
        broken = False
        try:
            raw = next(pieces, None)
        except grpc.RpcError:
            raw, broken = None, True
        finally:
            in_time = alarm.disarm()
        if not in_time:
            raise DeadlineExceededError(late)
        if broken:
            raise ProtocolError("stream interrupted: the client cancelled it")
        return raw


@contextmanager
def _peer_gone_is_unavailable() -> Iterator[None]:
    """A handler that cannot take messages any more (its communicator is shutting down or
    closed: a ``ConnectionFailedError`` of its own) answers UNAVAILABLE, as a stopped server
    would: the sender retries until its timeout or until our goodbye reaches it."""
    try:
        yield
    except ConnectionFailedError as error:
        raise _unavailable(error) from None


def _unavailable(error: ConnectionFailedError) -> ConnectionFailedError:
    if isinstance(error, UnavailableError | DeadlineExceededError):
        return error
    return UnavailableError(error.message)


def _more(piece: TensorMessage) -> TensorMessage:
    """A piece after the first: bytes only."""
    if piece.header is not None or piece.meta is not None:
        raise ProtocolError("one tensor per stream: only the first piece carries a header and "
                            "tensor metadata")
    return piece


__all__ = ["INSECURE_VERTICAL_WARNING", "VerticalPeerServer", "server_options"]
