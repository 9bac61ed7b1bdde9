"""What the aggregator's and the director's gRPC servers share: their method table made into a
grpc handler (with byte counting when an observer watches), their TLS credentials, and
start/serve with the process's grpc.health.v1 state.

A subclass names its service and method table (``SERVICE``, ``RPCS``) and sets ``settings``,
``health``, ``_tls_files`` and ``_observer``; ``_method(name)`` gives the servicer method of an
RPC (by default the attribute of that name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import grpc

from openfl_like.core.errors import AuthError
from openfl_like.pki import RevocationChecker
from openfl_like.protocol.service import STREAM_UNARY, UNARY_STREAM, UNARY_UNARY, Rpc
from openfl_like.transport.credentials import TlsFiles, server_credentials
from openfl_like.transport.health import HealthState
from openfl_like.transport.observers import (
    ServerObserver,
    counting_parser,
    counting_serializer,
)
from openfl_like.transport.server import RunningServer, serve, start_server
from openfl_like.transport.settings import TransportSettings

_FACTORIES: Mapping[str, Callable[..., grpc.RpcMethodHandler]] = {
    UNARY_UNARY: grpc.unary_unary_rpc_method_handler,
    UNARY_STREAM: grpc.unary_stream_rpc_method_handler,
    STREAM_UNARY: grpc.stream_unary_rpc_method_handler,
}


def revocation_checker(tls_files: TlsFiles | None) -> RevocationChecker | None:
    """The CRL check of a server's TLS files (None without TLS or without a CRL); a CRL
    needs the signing CA's certificate to verify it."""
    if tls_files is None or tls_files.crl_path is None:
        return None
    if tls_files.signing_cert_path is None:
        raise AuthError("a CRL needs the signing CA certificate to verify it")
    return RevocationChecker(tls_files.crl_path, tls_files.signing_cert_path)


class ServiceServer:
    SERVICE: ClassVar[str]
    RPCS: ClassVar[Mapping[str, Rpc]]

    settings: TransportSettings
    health: HealthState
    _tls_files: TlsFiles | None
    _observer: ServerObserver | None

    def _method(self, name: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self, name)
        return method

    def rpc_handler(self) -> grpc.GenericRpcHandler:
        observer = self._observer
        methods = {
            name: _FACTORIES[rpc.kind](
                self._method(name),
                request_deserializer=rpc.server_request_deserializer if observer is None
                else counting_parser(rpc.server_request_deserializer, observer.received),
                response_serializer=rpc.serialize_response if observer is None
                else counting_serializer(rpc.serialize_response, observer.sent),
            )
            for name, rpc in self.RPCS.items()
        }
        return grpc.method_handlers_generic_handler(self.SERVICE, methods)

    def _credentials(self) -> grpc.ServerCredentials | None:
        return server_credentials(self._tls_files) if self._tls_files is not None else None

    def start(self, *, host: str = "127.0.0.1", port: int = 0, ready: bool = True
              ) -> RunningServer:
        """Listen; health reports SERVING at once when ``ready`` (else the caller says when)."""
        running = start_server([self.rpc_handler()], settings=self.settings,
                               credentials=self._credentials(), host=host, port=port,
                               health=self.health)
        if ready:
            self.health.set_serving()
        return running

    @contextmanager
    def serve(self, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningServer]:
        with serve([self.rpc_handler()], settings=self.settings,
                   credentials=self._credentials(), host=host, port=port,
                   health=self.health) as running:
            self.health.set_serving()
            yield running
