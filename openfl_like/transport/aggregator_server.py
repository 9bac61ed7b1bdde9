"""AggregatorGRPCServer: protobuf <-> plain messages, identity checks, then the handler. No logic.

Every method checks the caller before it reads anything the caller chose to send:

1. the peer certificate, revocation and role from the grpc context alone
   (``HeaderChecker.check_peer``), before a unary request is even parsed and before the first
   message of an upload is awaited;
2. a per-peer cap on concurrent tensor streams and long-polls (``limits.PeerSlots``, keyed by
   certificate fingerprint): one more gets RESOURCE_EXHAUSTED, and the slot is released on every
   exit path;
3. the request's header (``HeaderChecker.check_header``). An upload's first message (header +
   result) must arrive within ``first_message_seconds``, else the call ends with
   DEADLINE_EXCEEDED and its worker is freed (``watchdog``).

Without TLS there is no certificate: caps are then keyed by the header's sender, after step 3,
as they are in single-certificate simulation mode (where every collaborator shares one
certificate). Unary requests arrive as raw bytes and are parsed here (``service.Rpc``): garbage
is INVALID_ARGUMENT and leaves nothing behind. Handler errors become status codes in
``status.translate_errors``; unexpected exceptions reach the client as INTERNAL without details.

Long-polls: a handler whose ``get_tasks`` takes a ``wakeup`` (the aggregator's does) gets one
``core.waiting.Wakeup`` per call, which the round closer sets on a change and grpc's
termination callback cancels when the client goes away (cancel, disconnect, deadline): the
worker thread is freed at once and nothing re-enters the handler while it waits. Other handlers
are served in slices of ``long_poll_slice_seconds`` with an ``is_active()`` check between them.

Uploads reach a plain handler as joined tensors (one tensor-size buffer per upload in flight); a
handler with the ``handlers.StreamingUploads`` capability gets ``TensorStream``s instead, read
chunk by chunk, with the same byte-count and size-limit checks (``chunking.stream_tensors``).

Safety net: only tensors tagged ``AGGREGATED_TAG`` ever leave through GetAggregatedTensors, each
name at most once and at most ``max_tensor_names_per_request`` of them, so neither a handler bug
nor a crafted request can leak one collaborator's update or fan a small request out into many
copies of the model.

An ``observer`` (``transport.observers.ServerObserver``, e.g. ``transport.metrics``) is told
the bytes of every message, each call that ends with an error status (with the check that
refused it), each result's outcome, each model transfer and each parked long-poll.

``revoked_participants()`` tells the application which participants seen so far the current
CRL revokes, so the round stops waiting for them at once.

Operations: GetStatus is for ``operator`` certificates only (a collaborator's is refused, an
operator's is refused by every other method), and its answer adds the bytes of the uploads in
flight (``inflight``). The server also carries grpc.health.v1 (``health``: NOT_SERVING until
the application calls ``health.set_serving()``, or ``start(ready=True)``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Any

import grpc

from openfl_like.core.errors import (
    AuthError,
    DeadlineExceededError,
    NotFoundError,
    OpenflLikeError,
    PermissionDeniedError,
    ProtocolError,
    ResourceLimitError,
)
from openfl_like.core.ids import Role
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import AGGREGATED_TAG, NamedTensor, PollStatus, TasksReply
from openfl_like.core.waiting import Wakeup
from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import base_pb2, convert
from openfl_like.protocol.chunking import (
    Chunk,
    TensorJoiner,
    pack_chunks,
    split_tensors,
    stream_tensors,
)
from openfl_like.protocol.service import (
    AGGREGATOR_RPCS,
    AGGREGATOR_SERVICE,
)
from openfl_like.protocol.wire import Frame
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.handlers import AggregatorHandler, StreamingUploads
from openfl_like.transport.health import HealthState
from openfl_like.transport.identity import HeaderChecker, PeerIdentity
from openfl_like.transport.inflight import UploadsInFlight
from openfl_like.transport.instances import InstanceRegistry
from openfl_like.transport.limits import PeerSlots
from openfl_like.transport.observers import (
    ACCEPTED,
    DOWNLOAD,
    DUPLICATE,
    REFUSED,
    UPLOAD,
    ServerObserver,
)
from openfl_like.transport.service_server import ServiceServer, revocation_checker
from openfl_like.transport.settings import TransportSettings
from openfl_like.transport.status import status_for, translate_errors
from openfl_like.transport.watchdog import Watchdog, expire_call

_log = get_logger(__name__)


class AggregatorGRPCServer(ServiceServer):
    """The Aggregator service over a handler; ``start()``/``serve()`` put it on the network."""

    SERVICE = AGGREGATOR_SERVICE
    RPCS = AGGREGATOR_RPCS

    def __init__(
        self,
        handler: AggregatorHandler,
        *,
        aggregator_name: str,
        federation_uuid: str,
        tls_files: TlsFiles | None,
        settings: TransportSettings | None = None,
        single_col_cert_common_name: str = "",
        observer: ServerObserver | None = None,
    ) -> None:
        self.settings = settings or TransportSettings()
        self._observer = observer
        if self.settings.tls and tls_files is None:
            raise AuthError("mutual TLS is on: the aggregator needs its certificate files")
        self._handler = handler
        # Handlers that can stage uploads chunk by chunk get them unjoined (handlers.py).
        self._streaming = handler if isinstance(handler, StreamingUploads) else None
        # Handlers whose get_tasks takes a ``wakeup`` park each poll on it (core.waiting).
        self._wakeable = "wakeup" in inspect.signature(handler.get_tasks).parameters
        # Handlers that take the collaborator's declared sample counts get them.
        shake = inspect.signature(handler.handshake).parameters
        self._declares = "sample_counts" in shake
        # Handlers that compare data contracts explicitly get the collaborator's digest.
        self._contracts = "contract_digest" in shake
        self._tls_files = tls_files if self.settings.tls else None
        self.aggregator_name = aggregator_name
        self.federation_uuid = federation_uuid
        self._single_cn = single_col_cert_common_name
        revocation = revocation_checker(self._tls_files)
        self._checker = HeaderChecker(
            server_name=aggregator_name,
            federation_uuid=federation_uuid,
            is_authorized=handler.is_authorized,
            revocation=revocation,
            tls=self._tls_files is not None,
            role=Role(self.settings.client_role),  # envoys under a director (settings.py)
            single_col_cert_common_name=single_col_cert_common_name,
            instances=InstanceRegistry(self.settings.instance_takeover_seconds),
        )
        self.streams = PeerSlots("tensor streams", self.settings.max_streams_per_peer)
        self.polls = PeerSlots("long-polls (GetTasks)", self.settings.max_polls_per_peer)
        self._watchdog = Watchdog()
        self.health = HealthState([AGGREGATOR_SERVICE])
        self.uploads = UploadsInFlight()

    def revoked_participants(self) -> frozenset[str]:
        """Names of the participants seen so far whose certificate the current CRL revokes.

        Seen: a call passed the certificate check, or was refused as revoked. The CRL is re-read
        when its file changed; otherwise this is one ``stat`` and a cached answer, cheap enough
        to poll several times a second. Empty without TLS or without a CRL.
        """
        return self._checker.revoked_participants()

    # -- network ---------------------------------------------------------------------------

    # -- helpers ---------------------------------------------------------------------------

    def _reply_header(self, collaborator: str) -> base_pb2.MessageHeader:
        return base_pb2.MessageHeader(
            sender=self.aggregator_name,
            receiver=collaborator,
            federation_uuid=self.federation_uuid,
            single_col_cert_common_name=self._single_cn,
        )

    def _slot_key(self, peer: PeerIdentity) -> str:
        """The certificate's fingerprint; '' when calls must be keyed by name (module docstring)."""
        return "" if self._single_cn else peer.fingerprint

    def _authenticate(
        self, name: str, raw: bytes, context: grpc.ServicerContext, role: Role | None = None,
        *, federation: bool = True,
    ) -> tuple[Any, str, PeerIdentity]:
        """Certificate, then parse, then header: (request, participant name, peer).

        ``role``: the certificate role the method needs (default: the participants').
        """
        peer = self._checker.check_peer(context, role=role, rpc=name if role else "")
        request = AGGREGATOR_RPCS[name].parse_request(raw)
        participant = self._checker.check_header(context, request.header, peer, role=role,
                                                 federation=federation)
        return request, participant, peer

    @contextmanager
    def _observed(self, method: str) -> Iterator[None]:
        """Tell the observer about a call that ends with an error (inside translate_errors)."""
        try:
            yield
        except Exception as error:
            if self._observer is not None:
                code, _ = status_for(error)
                check = getattr(error, "check", "") or (
                    error.code if isinstance(error, OpenflLikeError) else "internal")
                self._observer.refused(method, code.name, str(check))
                if method == "SendLocalTaskResults":
                    self._observer.result(REFUSED, code.name.lower())
            raise

    @contextmanager
    def _parked(self) -> Iterator[None]:
        if self._observer is None:
            yield
            return
        self._observer.polls_parked(+1)
        try:
            yield
        finally:
            self._observer.polls_parked(-1)

    def _hold(self, slots: PeerSlots, peer: PeerIdentity, name: str) -> Any:
        return slots.hold(self._slot_key(peer) or f"name:{name}", name)

    # -- RPCs ------------------------------------------------------------------------------

    def Handshake(self, raw: bytes, context: grpc.ServicerContext) -> pb.HandshakeResponse:
        with translate_errors(context, "Handshake"), self._observed("Handshake"):
            # Settings before federation ids (identity.py, part 5): another plan is told the
            # settings that differ by the handler's comparison, then the ids are checked.
            request, name, _ = self._authenticate("Handshake", raw, context, federation=False)
            if request.header.federation_uuid != self.federation_uuid:
                self._handler.handshake(name, request.plan_digest, dict(request.plan_fingerprint))
            self._checker.check_rest(context, request.header)
            extra: dict[str, Any] = {}
            if self._declares:
                extra["sample_counts"] = dict(request.sample_counts)
            if self._contracts:
                extra["contract_digest"] = request.contract_digest
            reply = self._handler.handshake(
                name, request.plan_digest, dict(request.plan_fingerprint), **extra
            )
            return convert.handshake_to_pb(reply, self._reply_header(name))

    def Heartbeat(self, raw: bytes, context: grpc.ServicerContext) -> pb.HeartbeatResponse:
        with translate_errors(context, "Heartbeat"), self._observed("Heartbeat"):
            _, name, _ = self._authenticate("Heartbeat", raw, context)
            reply = self._handler.heartbeat(name)
            return convert.heartbeat_to_pb(reply, self._reply_header(name))

    def GetTasks(self, raw: bytes, context: grpc.ServicerContext) -> pb.GetTasksResponse:
        with translate_errors(context, "GetTasks"), self._observed("GetTasks"):
            request, name, peer = self._authenticate("GetTasks", raw, context)
            wait = min(max(request.wait_seconds, 0.0), self.settings.long_poll_seconds)
            with self._hold(self.polls, peer, name), self._checker.polling(context, name), \
                    self._parked():
                if self._wakeable:
                    # Parked on a wake-up that a round close sets, or grpc when the call ends.
                    wakeup = Wakeup()
                    context.add_callback(wakeup.cancel)
                    reply = self._handler.get_tasks(  # type: ignore[call-arg]
                        name, wait, wakeup=wakeup)
                else:
                    reply = self._long_poll(name, wait, context)
            return convert.tasks_reply_to_pb(self._with_small_model(name, reply),
                                             self._reply_header(name))

    def _with_small_model(self, name: str, reply: TasksReply) -> TasksReply:
        """Work for a round whose model is small carries that model (no download call)."""
        limit = self.settings.inline_model_bytes
        if reply.status is not PollStatus.WORK or limit <= 0:
            return reply
        try:
            tensors = tuple(_only_aggregated(self._handler.get_aggregated_tensors(
                name, reply.round_number, [], [AGGREGATED_TAG])))
        except NotFoundError:  # the round moved on meanwhile: the client downloads, or polls
            return reply
        if sum(t.array.nbytes for t in tensors) > limit:
            return reply
        return replace(reply, model=tensors)

    def _long_poll(self, name: str, wait: float, context: grpc.ServicerContext) -> TasksReply:
        """``handler.get_tasks`` in slices while the caller is still there, for handlers that
        take no ``wakeup`` (module docstring)."""
        end = time.monotonic() + wait
        slice_seconds = self.settings.long_poll_slice_seconds
        while True:
            started = time.monotonic()
            remaining = max(0.0, end - started)
            granted = min(remaining, slice_seconds)
            reply = self._handler.get_tasks(name, granted)
            if reply.status is not PollStatus.WAIT or remaining <= slice_seconds:
                return reply
            if time.monotonic() - started < granted / 2:
                return reply  # WAIT well before its slice ended: the handler's own answer
            if not context.is_active():
                _log.debug("GetTasks of %s abandoned by the client; worker released", name)
                return reply  # grpc drops it; what matters is that this thread is free again
            self._checker.still_waiting(context, name)

    def GetAggregatedTensors(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[Frame]:
        with translate_errors(context, "GetAggregatedTensors"), \
                self._observed("GetAggregatedTensors"):
            request, name, peer = self._authenticate("GetAggregatedTensors", raw, context)
            names = self._tensor_names(request.tensor_names)
            with self._hold(self.streams, peer, name):
                tensors = self._handler.get_aggregated_tensors(
                    name, request.round_number, names, list(request.tags)
                )
                header: base_pb2.MessageHeader | None = self._reply_header(name)
                size = self.settings.chunk_size
                started, nbytes = time.monotonic(), 0
                for group in pack_chunks(split_tensors(_only_aggregated(tensors), size), size):
                    nbytes += sum(len(chunk.data) for chunk in group)
                    yield Frame.of(group, header=header)
                    header = None
                if header is not None:  # no tensors at all: still answer with our header
                    yield Frame(header=header)
                if self._observer is not None:
                    self._observer.transfer(DOWNLOAD, nbytes, time.monotonic() - started)

    def _tensor_names(self, requested: Iterable[str]) -> list[str]:
        """Each name at most once, and not too many: a small request must not make us send the
        model many times over."""
        names = list(requested)
        limit = self.settings.max_tensor_names_per_request
        if len(names) > limit:
            raise ResourceLimitError(
                f"{len(names)} tensor names in one request, over the limit of {limit}"
            )
        seen: set[str] = set()
        for tensor_name in names:
            if tensor_name in seen:
                raise ProtocolError(f"tensor {tensor_name!r} is requested more than once")
            seen.add(tensor_name)
        return names

    def SendLocalTaskResults(
        self, request_iterator: Iterator[Frame], context: grpc.ServicerContext
    ) -> pb.SendLocalTaskResultsResponse:
        with translate_errors(context, "SendLocalTaskResults"), \
                self._observed("SendLocalTaskResults"), ExitStack() as slots:
            started = time.monotonic()  # the transfer's time includes its first message
            peer = self._checker.check_peer(context)
            key = self._slot_key(peer)
            if key:  # capped before we wait for anything the caller sends
                slots.enter_context(self.streams.hold(key, peer.name))
            first = self._first_frame(request_iterator, context)
            if first.error:
                raise ProtocolError(first.error)
            if first.header is None:
                raise AuthError("the first message of an upload must carry the header")
            name = self._checker.check_header(context, first.header, peer)
            if not key:
                slots.enter_context(self.streams.hold(f"name:{name}", name))
            if first.result is None:
                raise ProtocolError("the first message of an upload must carry the result")
            result = convert.result_from_pb(first.result)
            if result.key.collaborator != name:
                raise PermissionDeniedError(
                    f"{name!r} cannot send results of {result.key.collaborator!r}"
                )
            limits = {
                "max_tensor_bytes": self.settings.max_tensor_bytes,
                "max_total_bytes": self.settings.max_model_bytes,
            }
            moved = [0]

            def count(nbytes: int) -> None:
                moved[0] += nbytes

            chunks = self.uploads.count(name, _chunks(first.chunks, request_iterator, count))
            if self._streaming is not None:
                streams = stream_tensors(chunks, **limits)
                ack = self._streaming.send_local_task_result_streams(result, streams)
            else:
                tensors = _join(chunks, TensorJoiner(**limits))
                ack = self._handler.send_local_task_results(result, tensors)
            if self._observer is not None:
                nbytes = moved[0]
                if nbytes:
                    self._observer.transfer(UPLOAD, nbytes, time.monotonic() - started)
                self._observer.result(DUPLICATE if ack.duplicate else ACCEPTED if ack.accepted
                                      else REFUSED, "" if ack.accepted else "not_counted")
            return convert.ack_to_pb(ack, self._reply_header(name))

    def _first_frame(
        self, request_iterator: Iterator[Frame], context: grpc.ServicerContext
    ) -> Frame:
        """The upload's first message, or DeadlineExceededError after ``first_message_seconds``.

        The read blocks in grpc with no timeout of its own; the watchdog ends the call when the
        time is up, which wakes the read and frees this worker (see ``watchdog``).
        """
        seconds = self.settings.first_message_seconds
        late = f"no first upload message within {seconds:g} s"
        alarm = self._watchdog.arm(seconds, lambda: expire_call(context, late))
        try:
            first = next(request_iterator, None)
        except grpc.RpcError:
            first = None
        finally:
            in_time = alarm.disarm()
        if not in_time:
            raise DeadlineExceededError(late)
        if first is None:
            raise ProtocolError("empty upload: the first message must carry the header")
        return first

    def GetStatus(self, raw: bytes, context: grpc.ServicerContext) -> pb.GetStatusResponse:
        with translate_errors(context, "GetStatus"), self._observed("GetStatus"):
            _, name, _ = self._authenticate("GetStatus", raw, context, role=Role.OPERATOR)
            snapshot = dict(self._handler.status())
            snapshot["uploads_in_flight"] = self.uploads.snapshot()
            status = convert.status_to_json(snapshot)
            return pb.GetStatusResponse(header=self._reply_header(name), status_json=status)


def _only_aggregated(tensors: Iterable[NamedTensor]) -> Iterator[NamedTensor]:
    for tensor in tensors:
        if AGGREGATED_TAG not in tensor.tags:
            _log.error("handler offered tensor %r without the %r tag", tensor.name, AGGREGATED_TAG)
            raise PermissionDeniedError(f"tensor {tensor.name!r} is not part of the global model")
        yield tensor


def _join(chunks: Iterator[Chunk], joiner: TensorJoiner) -> Iterator[NamedTensor]:
    """The upload's tensors, each yielded as soon as its last chunk has arrived."""
    for chunk in chunks:
        tensor = joiner.feed(chunk)
        if tensor is not None:
            yield tensor
            # Drop our reference before the next chunk opens the next tensor's buffer, so an
            # upload holds one tensor-size buffer at a time, not two.
            tensor = None
    joiner.finish()


def _chunks(first: tuple[Chunk, ...], rest: Iterator[Frame],
            count: Callable[[int], object] | None = None) -> Iterator[Chunk]:
    """The upload's chunks; a malformed message or a vanished client is a ProtocolError.
    ``count``, when given, is told each chunk's size (the transfer's tensor bytes)."""
    for chunk in first:
        if count is not None:
            count(len(chunk.data))
        yield chunk
    try:
        for frame in rest:
            if frame.error:
                raise ProtocolError(frame.error)
            for chunk in frame.chunks:
                if count is not None:
                    count(len(chunk.data))
                yield chunk
    except grpc.RpcError:  # the client went away mid-stream
        raise ProtocolError("upload interrupted: the client cancelled the stream") from None
