"""OperatorClient: an operator certificate asks an aggregator for its status over mutual TLS.

An operator is no participant: no handshake, no instance id, no heartbeats, one unary call
(GetStatus) with the usual header (sender = the certificate's CN, receiver = the aggregator's
name, federation id) and the usual checks of the reply's header. Connection failures are retried
as the collaborators' are (backoff with jitter, bounded by a total deadline), then reported in
words (``describe_failure``); a refusal (wrong role, revoked, another federation) at once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import TracebackType

import grpc

from openfl_like.core.errors import ConnectionFailedError, ProtocolError
from openfl_like.protocol import aggregator_pb2 as pb
from openfl_like.protocol import base_pb2
from openfl_like.protocol.service import AGGREGATOR_RPCS
from openfl_like.transport.aggregator_client import channel_options, describe_failure
from openfl_like.transport.credentials import TlsFiles, channel_credentials
from openfl_like.transport.identity import check_reply_header
from openfl_like.transport.retry import RetryExhausted, RetryPolicy
from openfl_like.transport.settings import TransportSettings
from openfl_like.transport.status import error_from_rpc, is_retryable


class OperatorClient:
    """Read-only calls of an ``operator`` certificate to one aggregator."""

    def __init__(self, *, target: str, operator_name: str, aggregator_name: str,
                 federation_uuid: str, tls_files: TlsFiles,
                 settings: TransportSettings | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.settings = settings or TransportSettings()
        self.target = target
        self._tls_files = tls_files
        self._retry = retry or RetryPolicy.from_settings(self.settings.retry)
        self._header = base_pb2.MessageHeader(
            sender=operator_name, receiver=aggregator_name, federation_uuid=federation_uuid)
        self._channel: grpc.Channel | None = None

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _get_channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.secure_channel(
                self.target, channel_credentials(self._tls_files), channel_options(self.settings))
        return self._channel

    def get_status(self) -> Mapping[str, object]:
        """The aggregator's status snapshot, as `fx aggregator status` shows it."""
        rpc = AGGREGATOR_RPCS["GetStatus"]
        call = self._get_channel().unary_unary(
            rpc.path, request_serializer=rpc.serialize_request,
            response_deserializer=rpc.deserialize_response)
        request = pb.GetStatusRequest(header=self._header)
        what = f"get status from {self.target}"
        try:
            response = self._retry.call(
                lambda: call(request, timeout=self.settings.rpc_timeout_seconds),
                is_retryable=is_retryable, describe=what)
        except RetryExhausted as exhausted:
            last = exhausted.last
            reason = (describe_failure(last, self.target) if isinstance(last, grpc.RpcError)
                      else str(last))
            raise ConnectionFailedError(
                f"{what} failed after {exhausted.attempts} attempts in "
                f"{exhausted.elapsed:.0f}s: {reason}") from None
        except grpc.RpcError as error:
            raise error_from_rpc(error, what=what) from None
        check_reply_header(response.header if response.HasField("header") else None,
                           self._header, "get status")
        try:
            status: Mapping[str, object] = json.loads(response.status_json)
        except ValueError as exc:
            raise ProtocolError(f"aggregator status is not JSON: {exc}") from None
        return status


__all__ = ["OperatorClient"]
