"""AggregatorGRPCServer: protobuf <-> plain messages, identity checks, then the handler. No logic.

Every method first checks the caller (``identity.HeaderChecker``: certificate, revocation, header
sender/receiver/federation) and only then reads a payload; for the client-streamed upload only
the first message is read before the check. Handler errors become status codes in
``status.translate_errors``; unexpected exceptions reach the client as INTERNAL without details.

Long-polls are served in slices: ``GetTasks`` calls ``handler.get_tasks`` for at most
``long_poll_slice_seconds`` at a time and stops as soon as the reply is not WAIT, the caller's
wait is over, or the call is no longer active (the client cancelled, disconnected or hit its
deadline). So an abandoned poll frees its worker thread within one slice, with no change to the
handler's interface: any handler whose ``get_tasks`` re-checks its state on entry (as a
long-poll must) can be sliced without losing a wake-up.

Uploads reach a plain handler as joined tensors (one tensor-size buffer per upload in flight); a
handler with the ``handlers.StreamingUploads`` capability gets ``TensorStream``s instead, read
chunk by chunk, with the same byte-count and size-limit checks (``chunking.stream_tensors``).

Safety net: only tensors tagged ``AGGREGATED_TAG`` ever leave through GetAggregatedTensors, so a
handler bug cannot leak one collaborator's update to another.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import grpc

from openfl_like.core.errors import (
    AuthError,
    PermissionDeniedError,
    ProtocolError,
)
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import AGGREGATED_TAG, NamedTensor, PollStatus, TasksReply
from openfl_like.pki import RevocationChecker
from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import base_pb2, convert
from openfl_like.protocol.chunking import Chunk, TensorJoiner, split_tensors, stream_tensors
from openfl_like.protocol.service import (
    AGGREGATOR_RPCS,
    AGGREGATOR_SERVICE,
    STREAM_UNARY,
    UNARY_STREAM,
    UNARY_UNARY,
)
from openfl_like.protocol.wire import Frame
from openfl_like.transport.credentials import TlsFiles, server_credentials
from openfl_like.transport.handlers import AggregatorHandler, StreamingUploads
from openfl_like.transport.identity import HeaderChecker
from openfl_like.transport.instances import InstanceRegistry
from openfl_like.transport.server import RunningServer, serve, start_server
from openfl_like.transport.settings import TransportSettings
from openfl_like.transport.status import translate_errors

_log = get_logger(__name__)


class AggregatorGRPCServer:
    """The Aggregator service over a handler; ``start()``/``serve()`` put it on the network."""

    def __init__(
        self,
        handler: AggregatorHandler,
        *,
        aggregator_name: str,
        federation_uuid: str,
        tls_files: TlsFiles | None,
        settings: TransportSettings | None = None,
        single_col_cert_common_name: str = "",
    ) -> None:
        self.settings = settings or TransportSettings()
        if self.settings.tls and tls_files is None:
            raise AuthError("mutual TLS is on: the aggregator needs its certificate files")
        self._handler = handler
        # Handlers that can stage uploads chunk by chunk get them unjoined (handlers.py).
        self._streaming = handler if isinstance(handler, StreamingUploads) else None
        self._tls_files = tls_files if self.settings.tls else None
        self.aggregator_name = aggregator_name
        self.federation_uuid = federation_uuid
        self._single_cn = single_col_cert_common_name
        revocation = None
        if self._tls_files is not None and self._tls_files.crl_path is not None:
            if self._tls_files.signing_cert_path is None:
                raise AuthError("a CRL needs the signing CA certificate to verify it")
            revocation = RevocationChecker(
                self._tls_files.crl_path, self._tls_files.signing_cert_path
            )
        self._checker = HeaderChecker(
            server_name=aggregator_name,
            federation_uuid=federation_uuid,
            is_authorized=handler.is_authorized,
            revocation=revocation,
            tls=self._tls_files is not None,
            single_col_cert_common_name=single_col_cert_common_name,
            instances=InstanceRegistry(self.settings.instance_takeover_seconds),
        )

    # -- network ---------------------------------------------------------------------------

    def rpc_handler(self) -> grpc.GenericRpcHandler:
        factories = {
            UNARY_UNARY: grpc.unary_unary_rpc_method_handler,
            UNARY_STREAM: grpc.unary_stream_rpc_method_handler,
            STREAM_UNARY: grpc.stream_unary_rpc_method_handler,
        }
        methods = {
            name: factories[rpc.kind](
                getattr(self, name),
                request_deserializer=rpc.deserialize_request,
                response_serializer=rpc.serialize_response,
            )
            for name, rpc in AGGREGATOR_RPCS.items()
        }
        return grpc.method_handlers_generic_handler(AGGREGATOR_SERVICE, methods)

    def _credentials(self) -> grpc.ServerCredentials | None:
        return server_credentials(self._tls_files) if self._tls_files is not None else None

    def start(self, *, host: str = "127.0.0.1", port: int = 0) -> RunningServer:
        return start_server(
            [self.rpc_handler()],
            settings=self.settings,
            credentials=self._credentials(),
            host=host,
            port=port,
        )

    @contextmanager
    def serve(self, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningServer]:
        with serve(
            [self.rpc_handler()],
            settings=self.settings,
            credentials=self._credentials(),
            host=host,
            port=port,
        ) as running:
            yield running

    # -- helpers ---------------------------------------------------------------------------

    def _reply_header(self, collaborator: str) -> base_pb2.MessageHeader:
        return base_pb2.MessageHeader(
            sender=self.aggregator_name,
            receiver=collaborator,
            federation_uuid=self.federation_uuid,
            single_col_cert_common_name=self._single_cn,
        )

    # -- RPCs ------------------------------------------------------------------------------

    def Handshake(
        self, request: pb.HandshakeRequest, context: grpc.ServicerContext
    ) -> pb.HandshakeResponse:
        with translate_errors(context, "Handshake"):
            name = self._checker.check(context, request.header)
            reply = self._handler.handshake(
                name, request.plan_digest, dict(request.plan_fingerprint)
            )
            return convert.handshake_to_pb(reply, self._reply_header(name))

    def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.ServicerContext
    ) -> pb.HeartbeatResponse:
        with translate_errors(context, "Heartbeat"):
            name = self._checker.check(context, request.header)
            reply = self._handler.heartbeat(name)
            return convert.heartbeat_to_pb(reply, self._reply_header(name))

    def GetTasks(
        self, request: pb.GetTasksRequest, context: grpc.ServicerContext
    ) -> pb.GetTasksResponse:
        with translate_errors(context, "GetTasks"):
            name = self._checker.check(context, request.header)
            wait = min(max(request.wait_seconds, 0.0), self.settings.long_poll_seconds)
            reply = self._long_poll(name, wait, context)
            return convert.tasks_reply_to_pb(reply, self._reply_header(name))

    def _long_poll(self, name: str, wait: float, context: grpc.ServicerContext) -> TasksReply:
        """``handler.get_tasks`` in slices while the caller is still there (module docstring)."""
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

    def GetAggregatedTensors(
        self, request: pb.GetAggregatedTensorsRequest, context: grpc.ServicerContext
    ) -> Iterator[Frame]:
        with translate_errors(context, "GetAggregatedTensors"):
            name = self._checker.check(context, request.header)
            tensors = self._handler.get_aggregated_tensors(
                name, request.round_number, list(request.tensor_names), list(request.tags)
            )
            header: base_pb2.MessageHeader | None = self._reply_header(name)
            for chunk in split_tensors(_only_aggregated(tensors), self.settings.chunk_size):
                yield Frame(header=header, chunk=chunk)
                header = None
            if header is not None:  # no tensors at all: still answer with our header
                yield Frame(header=header)

    def SendLocalTaskResults(
        self, request_iterator: Iterator[Frame], context: grpc.ServicerContext
    ) -> pb.SendLocalTaskResultsResponse:
        with translate_errors(context, "SendLocalTaskResults"):
            first = next(request_iterator, None)
            if first is None:
                raise ProtocolError("empty upload: the first message must carry the header")
            if first.error:
                raise ProtocolError(first.error)
            if first.header is None:
                raise AuthError("the first message of an upload must carry the header")
            name = self._checker.check(context, first.header)
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
            if self._streaming is not None:
                streams = stream_tensors(_chunks(first.chunk, request_iterator), **limits)
                ack = self._streaming.send_local_task_result_streams(result, streams)
            else:
                tensors = _join(first.chunk, request_iterator, TensorJoiner(**limits))
                ack = self._handler.send_local_task_results(result, tensors)
            return convert.ack_to_pb(ack, self._reply_header(name))

    def GetStatus(
        self, request: pb.GetStatusRequest, context: grpc.ServicerContext
    ) -> pb.GetStatusResponse:
        with translate_errors(context, "GetStatus"):
            name = self._checker.check(context, request.header)
            status = convert.status_to_json(self._handler.status())
            return pb.GetStatusResponse(header=self._reply_header(name), status_json=status)


def _only_aggregated(tensors: Iterable[NamedTensor]) -> Iterator[NamedTensor]:
    for tensor in tensors:
        if AGGREGATED_TAG not in tensor.tags:
            _log.error("handler offered tensor %r without the %r tag", tensor.name, AGGREGATED_TAG)
            raise PermissionDeniedError(f"tensor {tensor.name!r} is not part of the global model")
        yield tensor


def _join(
    first: Chunk | None, rest: Iterator[Frame], joiner: TensorJoiner
) -> Iterator[NamedTensor]:
    """The upload's tensors, each yielded as soon as its last chunk has arrived."""
    for chunk in _chunks(first, rest):
        tensor = joiner.feed(chunk)
        if tensor is not None:
            yield tensor
            # Drop our reference before the next chunk opens the next tensor's buffer, so an
            # upload holds one tensor-size buffer at a time, not two.
            tensor = None
    joiner.finish()


def _chunks(first: Chunk | None, rest: Iterator[Frame]) -> Iterator[Chunk]:
    """The upload's chunks; a malformed message or a vanished client is a ProtocolError."""
    if first is not None:
        yield first
    try:
        for frame in rest:
            if frame.error:
                raise ProtocolError(frame.error)
            if frame.chunk is not None:
                yield frame.chunk
    except grpc.RpcError:  # the client went away mid-stream
        raise ProtocolError("upload interrupted: the client cancelled the stream") from None
