"""AggregatorGRPCClient: one persistent mutual-TLS channel, named methods, retries, streaming.

Every call has a deadline. UNAVAILABLE and DEADLINE_EXCEEDED (a dropped connection, a restarting
aggregator, a full disk) and RESOURCE_EXHAUSTED (a per-peer cap on concurrent calls) are retried
by ``RetryPolicy``: exponential backoff with full jitter, bounded by a total deadline, after
which one ``ConnectionFailedError`` says what failed (DNS, TCP connect, TLS handshake and which
check, or no answer in time; a cap still hit at the end stays a ``ResourceExhaustedError``).
Authorisation, plan mismatch, a failed federation and malformed requests are raised at once as
the matching ``core.errors`` exception, never retried. Every reply's header is checked
(``identity.check_reply_header``): it must come from the aggregator we addressed, to us, in our
federation; otherwise AuthError (ProtocolError when it has no header). A server certificate that
does not name the host dialled is a ``ConfigError`` at once (``hostname``), never retried.

Uploads replay from the start on retry: ``send_local_task_results`` takes a mapping of arrays or a
factory returning a fresh iterable, never a one-shot iterator; the result's idempotency key
(collaborator, round, task) lets the aggregator recognise a repeat.

An ``observer`` (``transport.observers.ClientObserver``, e.g. ``transport.metrics``) is told the
size of every message sent and received, each retry with its status code, and each time the
channel becomes READY again after it had been connected (a reconnect).
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import grpc
import numpy as np

from openfl_like.core.errors import ConnectionFailedError, ProtocolError
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import (
    AGGREGATED_TAG,
    HandshakeReply,
    HeartbeatReply,
    NamedTensor,
    ResultAck,
    TaskResult,
    TasksReply,
)
from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import base_pb2, convert
from openfl_like.protocol.chunking import TensorJoiner, pack_chunks, split_tensors
from openfl_like.protocol.service import AGGREGATOR_RPCS, Rpc
from openfl_like.protocol.wire import Frame
from openfl_like.transport.credentials import TlsFiles, channel_credentials
from openfl_like.transport.hostname import hostname_mismatch_error, is_hostname_mismatch
from openfl_like.transport.identity import check_reply_header
from openfl_like.transport.instances import INSTANCE_METADATA_KEY, LEAVING_METADATA_KEY
from openfl_like.transport.observers import (
    ClientObserver,
    counting_parser,
    counting_serializer,
)
from openfl_like.transport.retry import RetryExhausted, RetryPolicy
from openfl_like.transport.server import INSECURE_WARNING
from openfl_like.transport.settings import TransportSettings
from openfl_like.transport.status import error_from_rpc, is_retryable

T = TypeVar("T")
_log = get_logger(__name__)

TensorSource = Mapping[str, np.ndarray] | Callable[[], Iterable[NamedTensor]]


def _retryable(error: BaseException) -> bool:
    """Retried with backoff: what ``is_retryable`` says, but never a certificate that does not
    name the host dialled (``hostname``): no retry can change it."""
    return is_retryable(error) and not is_hostname_mismatch(error)


def channel_options(settings: TransportSettings) -> list[tuple[str, int | str]]:
    keepalive, retry = settings.keepalive, settings.retry
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", settings.max_receive_bytes),
        ("grpc.max_send_message_length", settings.max_receive_bytes),
        ("grpc.keepalive_time_ms", int(keepalive.time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(keepalive.timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", int(keepalive.permit_without_calls)),
        ("grpc.http2.max_pings_without_data", 0),
        # reconnect quickly after a server restart; our RetryPolicy bounds the total time
        ("grpc.initial_reconnect_backoff_ms", int(retry.initial_backoff_seconds * 1000)),
        ("grpc.min_reconnect_backoff_ms", int(retry.initial_backoff_seconds * 1000)),
        ("grpc.max_reconnect_backoff_ms", int(retry.max_backoff_seconds * 1000)),
    ]
    if settings.target_name_override:
        options.append(("grpc.ssl_target_name_override", settings.target_name_override))
    return options


def describe_failure(error: grpc.RpcError, target: str, *, server: str = "aggregator") -> str:
    """What a connection failure was, in words, from grpc's status details (``server``: what
    we dialled, for the messages)."""
    code = error.code() if hasattr(error, "code") else None
    details = (error.details() if hasattr(error, "details") else "") or ""
    text = details.lower()
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer from the {server} at {target} in time ({details})"
    if "dns" in text or "resolv" in text or "name not found" in text:
        return f"DNS resolution of {target} failed ({details})"
    if "connection refused" in text:
        return f"TCP connect to {target} refused: is the {server} running? ({details})"
    if "peer name" in text or "hostname" in text or "not in peer certificate" in text:
        return (
            f"TLS handshake with {target} failed: the server certificate does not name this "
            f"host (SAN mismatch) ({details})"
        )
    if "certificate_verify_failed" in text or "certificate verify failed" in text:
        return (
            f"TLS handshake with {target} failed: the server certificate did not verify "
            f"against our CA bundle (other CA, expired or wrong usage) ({details})"
        )
    if re.search(r"ssl|tls|handshake|alert|socket closed|connection reset", text):
        return (
            f"TLS handshake with {target} failed: the {server} closed the connection, most "
            f"likely refusing our client certificate (missing, from another CA, or expired) "
            f"({details})"
        )
    return f"{server} at {target} unavailable ({details or code})"


class AggregatorGRPCClient:
    """Talks to one aggregator as one collaborator; see the module docstring."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        collaborator_name: str,
        aggregator_name: str,
        federation_uuid: str,
        tls_files: TlsFiles | None,
        settings: TransportSettings | None = None,
        single_col_cert_common_name: str = "",
        retry: RetryPolicy | None = None,
        observer: ClientObserver | None = None,
    ) -> None:
        self.settings = settings or TransportSettings()
        self._observer = observer
        self._was_ready = False  # the channel has been READY once (reconnects count after)
        if self.settings.tls and tls_files is None:
            raise ConnectionFailedError("mutual TLS is on: the collaborator needs its certificate")
        self.target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._host, self._port = host, port
        self.collaborator_name = collaborator_name
        self._tls_files = tls_files if self.settings.tls else None
        self._retry = retry or RetryPolicy.from_settings(self.settings.retry)
        self._header = base_pb2.MessageHeader(
            sender=collaborator_name,
            receiver=aggregator_name,
            federation_uuid=federation_uuid,
            single_col_cert_common_name=single_col_cert_common_name,
        )
        # This process's identity among processes holding the same certificate (instances.py).
        self.instance_id = secrets.token_hex(8)
        self._metadata = ((INSTANCE_METADATA_KEY, self.instance_id),)
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._calls: dict[str, Any] = {}

    # -- channel lifecycle -----------------------------------------------------------------

    def connect(self) -> AggregatorGRPCClient:
        """Open the channel (idempotent). The TCP/TLS connection is made on the first call."""
        with self._lock:
            if self._channel is None:
                self._channel = self._open_channel()
                if self._observer is not None:
                    self._channel.subscribe(self._on_connectivity)
                self._calls = {name: self._callable(self._channel, rpc)
                               for name, rpc in AGGREGATOR_RPCS.items()}  # fmt: skip
        return self

    def disconnect(self) -> None:
        with self._lock:
            channel, self._channel, self._calls = self._channel, None, {}
        if channel is not None:
            if self._observer is not None:
                channel.unsubscribe(self._on_connectivity)
            channel.close()

    def _on_connectivity(self, state: grpc.ChannelConnectivity) -> None:
        """grpc's connectivity callback: READY again after having been READY is a reconnect."""
        if state is grpc.ChannelConnectivity.READY:
            if self._was_ready and self._observer is not None:
                self._observer.reconnect()
            self._was_ready = True

    def reconnect(self) -> None:
        self.disconnect()
        self.connect()

    def __enter__(self) -> AggregatorGRPCClient:
        return self.connect()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.disconnect()

    def _open_channel(self) -> grpc.Channel:
        options = channel_options(self.settings)
        if self._tls_files is None:
            _log.warning(INSECURE_WARNING)
            return grpc.insecure_channel(self.target, options=options)
        return grpc.secure_channel(self.target, channel_credentials(self._tls_files), options)

    def _callable(self, channel: grpc.Channel, rpc: Rpc) -> Any:
        factory = getattr(channel, rpc.kind)
        observer = self._observer
        multi_callable = factory(
            rpc.path,
            request_serializer=rpc.serialize_request if observer is None
            else counting_serializer(rpc.serialize_request, observer.sent),
            response_deserializer=rpc.deserialize_response if observer is None
            else counting_parser(rpc.deserialize_response, observer.received),
        )
        return functools.partial(multi_callable, metadata=self._metadata)

    def _call(self, name: str) -> Any:
        if self._channel is None:
            self.connect()
        return self._calls[name]

    # -- retry -----------------------------------------------------------------------------

    def _with_retry(self, what: str, operation: Callable[[], T]) -> T:
        try:
            return self._retry.call(operation, is_retryable=_retryable, describe=what,
                                    on_retry=None if self._observer is None else self._retried)
        except RetryExhausted as exhausted:
            last = exhausted.last
            busy = grpc.StatusCode.RESOURCE_EXHAUSTED
            if isinstance(last, grpc.RpcError) and last.code() is busy:  # type: ignore[attr-defined]
                raise error_from_rpc(
                    last, what=f"{what} (still refused after {exhausted.attempts} attempts)"
                ) from None
            reason = (
                describe_failure(last, self.target)
                if isinstance(last, grpc.RpcError)
                else str(last)
            )
            raise ConnectionFailedError(
                f"{what} failed after {exhausted.attempts} attempts in "
                f"{exhausted.elapsed:.0f}s: {reason}"
            ) from None
        except grpc.RpcError as error:
            if is_hostname_mismatch(error):  # configuration, not an outage: fatal at once
                raise hostname_mismatch_error(
                    error, what=what, server="aggregator", host=self._host, port=self._port,
                    dialled=self.settings.target_name_override or self._host,
                    tls_files=self._tls_files,
                ) from None
            raise error_from_rpc(error, what=what) from None

    def _retried(self, error: BaseException, _wait: float) -> None:
        code = getattr(error, "code", None)
        status = code() if callable(code) else None
        if self._observer is not None:
            self._observer.retry(getattr(status, "name", "UNKNOWN"))

    def _check(self, response: Any, what: str) -> None:
        header = response.header if response.HasField("header") else None
        check_reply_header(header, self._header, what)

    # -- RPCs ------------------------------------------------------------------------------

    def handshake(self, plan_digest: str, fingerprint: Mapping[str, str],
                  sample_counts: Mapping[str, int] | None = None,
                  contract_digest: str = "") -> HandshakeReply:
        request = pb.HandshakeRequest(
            header=self._header, plan_digest=plan_digest, plan_fingerprint=dict(fingerprint),
            sample_counts=dict(sample_counts or {}), contract_digest=contract_digest,
        )
        response = self._with_retry(
            "handshake",
            lambda: self._call("Handshake")(request, timeout=self.settings.rpc_timeout_seconds),
        )
        self._check(response, "handshake")
        return convert.handshake_from_pb(response)

    def heartbeat(self) -> HeartbeatReply:
        request = pb.HeartbeatRequest(header=self._header)
        response = self._with_retry(
            "heartbeat",
            lambda: self._call("Heartbeat")(request, timeout=self.settings.rpc_timeout_seconds),
        )
        self._check(response, "heartbeat")
        return convert.heartbeat_from_pb(response)

    def leave(self, timeout: float = 2.0) -> None:
        """Tell the aggregator this process stops on purpose (one heartbeat, no retry), so a
        restarted collaborator of the same name is not refused as a second instance. Best
        effort: an unreachable aggregator frees the name after its takeover time anyway."""
        if self._channel is None:
            return
        request = pb.HeartbeatRequest(header=self._header)
        with contextlib.suppress(grpc.RpcError):
            self._calls["Heartbeat"](request, timeout=timeout,
                                     metadata=(*self._metadata, (LEAVING_METADATA_KEY, "1")))

    def get_tasks(self, wait_seconds: float | None = None) -> TasksReply:
        """Long-poll for work: the aggregator holds the call up to ``wait_seconds``."""
        wait = self.settings.long_poll_seconds if wait_seconds is None else wait_seconds
        request = pb.GetTasksRequest(header=self._header, wait_seconds=wait)
        # the deadline covers the server's bounded wait plus an ordinary call's time
        timeout = wait + self.settings.rpc_timeout_seconds
        response = self._with_retry(
            "get tasks", lambda: self._call("GetTasks")(request, timeout=timeout)
        )
        self._check(response, "get tasks")
        return convert.tasks_reply_from_pb(response,
                                           max_model_bytes=self.settings.max_model_bytes)

    def get_aggregated_tensors(
        self, round_number: int, names: Sequence[str], tags: Sequence[str] = (AGGREGATED_TAG,)
    ) -> dict[str, NamedTensor]:
        """Every requested global-model tensor, streamed in one call; retried as a whole."""
        request = pb.GetAggregatedTensorsRequest(
            header=self._header, round_number=round_number, tensor_names=list(names),
            tags=list(tags),
        )  # fmt: skip
        return self._with_retry(
            "get aggregated tensors", lambda: self._download(request)
        )

    def iter_aggregated_tensors(
        self, round_number: int, names: Sequence[str], tags: Sequence[str] = (AGGREGATED_TAG,)
    ) -> Iterator[NamedTensor]:
        """Like :meth:`get_aggregated_tensors`, one tensor at a time and without retry."""
        request = pb.GetAggregatedTensorsRequest(
            header=self._header, round_number=round_number, tensor_names=list(names),
            tags=list(tags),
        )  # fmt: skip
        try:
            yield from self._stream_download(request)
        except grpc.RpcError as error:
            raise error_from_rpc(error, what="get aggregated tensors") from None

    def _download(self, request: pb.GetAggregatedTensorsRequest) -> dict[str, NamedTensor]:
        return {tensor.name: tensor for tensor in self._stream_download(request)}

    def _stream_download(self, request: pb.GetAggregatedTensorsRequest) -> Iterator[NamedTensor]:
        joiner = TensorJoiner(
            max_tensor_bytes=self.settings.max_tensor_bytes,
            max_total_bytes=self.settings.max_model_bytes,
        )
        call = self._call("GetAggregatedTensors")(
            request, timeout=self.settings.stream_timeout_seconds
        )
        first = True
        try:
            for frame in call:
                if frame.error:
                    raise ProtocolError(f"from the aggregator: {frame.error}")
                if first:
                    check_reply_header(frame.header, self._header, "get aggregated tensors")
                    first = False
                for chunk in frame.chunks:
                    tensor = joiner.feed(chunk)
                    if tensor is not None:
                        yield tensor
            if first:
                raise ProtocolError("get aggregated tensors: the aggregator sent no reply")
            joiner.finish()
        finally:
            call.cancel()  # no-op when complete; frees the stream when we stop early

    def send_local_task_results(self, result: TaskResult, tensors: TensorSource) -> ResultAck:
        """Upload one result: metadata first, then every tensor in chunks. Retried from the start.

        ``tensors`` is a mapping name -> array, or a callable returning a fresh iterable of
        NamedTensor on each call (so a retry replays the whole upload).
        """
        if isinstance(tensors, Iterator):
            raise TypeError("pass a mapping or a callable returning tensors, not an iterator")
        source = _tensor_factory(result, tensors)
        meta = convert.result_to_pb(result)
        # Tensors already in memory (a mapping) ride in the first message too, so a small
        # model's whole upload is one message; a lazy source gets a header-only first message
        # at once (the server bounds how long it waits for that one).
        eager = isinstance(tensors, Mapping)

        def frames() -> Iterator[Frame]:
            size = self.settings.chunk_size
            first = True
            if not eager:
                yield Frame(header=self._header, result=meta)
                first = False
            for group in pack_chunks(split_tensors(source(), size), size):
                yield Frame.of(group, header=self._header, result=meta) if first \
                    else Frame.of(group)
                first = False
            if first:
                yield Frame(header=self._header, result=meta)

        response = self._with_retry(
            "send local task results",
            lambda: self._call("SendLocalTaskResults")(
                frames(), timeout=self.settings.stream_timeout_seconds
            ),
        )
        self._check(response, "send local task results")
        return convert.ack_from_pb(response)


def _tensor_factory(
    result: TaskResult, tensors: TensorSource
) -> Callable[[], Iterable[NamedTensor]]:
    if isinstance(tensors, Mapping):
        mapping = tensors
        round_number = result.key.round_number

        def from_mapping() -> Iterator[NamedTensor]:
            for name, array in mapping.items():
                yield NamedTensor(name, np.asarray(array), round_number)

        return from_mapping
    if callable(tensors):
        return tensors
    raise TypeError(f"tensors must be a mapping or a callable, got {type(tensors).__name__}")


__all__ = ["AggregatorGRPCClient", "TensorSource", "describe_failure"]
