"""DirectorGRPCServer: director.proto <-> ``core.experiments`` messages, identity, then the handler.

Envoys and experimenters share one port; who may call what comes from the caller's certificate
(CN = name, OU = role), checked before anything the caller sent is read:

1. the peer certificate (present, not revoked by the CRL, valid now) and its role against the
   method's role (``director_service.RPC_ROLES``): envoy methods for envoy certificates only,
   experimenter methods for experimenter certificates only; another role is PERMISSION_DENIED
   naming the role and the method (``HeaderChecker.check_peer``);
2. per-peer caps (``limits.PeerSlots``, by certificate fingerprint) on parked WaitExperiment
   polls, metric streams and file transfers: one more is RESOURCE_EXHAUSTED;
3. the request's header: sender == certificate CN (else UNAUTHENTICATED), the handler's
   ``is_authorized(name, role)`` (else PERMISSION_DENIED), receiver == this director, and
   federation_uuid == the director's id. The first message of a client stream (SetNewExperiment,
   SendExperimentFeedback) must arrive within ``first_message_seconds`` (``watchdog``).

Requests arrive as raw bytes and are parsed here (``director_service``): garbage is
INVALID_ARGUMENT and the server keeps serving. Handler errors become status codes in
``status.translate_errors``; unexpected exceptions are INTERNAL without details.

Long-polls and metric streams park on a ``core.waiting.Wakeup`` per call, cancelled by grpc's
termination callback when the client goes away, so the worker is freed at once. Packages and
models travel as ``PackageChunk`` streams read lazily (``director_streams``): an upload's
``total_size`` is checked against ``max_package_bytes`` before any chunk is read
(RESOURCE_EXHAUSTED), and the handler reads the files off the stream; their sha256 is the
handler's to check.

An ``observer`` (``transport.observers.ServerObserver``, e.g. ``transport.director_metrics``) is
told the bytes of every message, each call that ends with an error status (RPC, code, check),
each submission's outcome and each parked WaitExperiment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any

import grpc

from openfl_like.core.errors import (
    AuthError,
    DeadlineExceededError,
    OpenflLikeError,
    ProtocolError,
    ResourceExhaustedError,
    ResourceLimitError,
)
from openfl_like.core.experiments import MODEL_CHOICES, Submission
from openfl_like.core.ids import Role
from openfl_like.core.waiting import Wakeup
from openfl_like.protocol import base_pb2
from openfl_like.protocol import director_pb2 as pb
from openfl_like.protocol.director_convert import (
    assignment_to_pb,
    event_to_pb,
    experiment_kind,
    feedback_item_from_pb,
    shard_from_pb,
    to_json,
    truncate_utf8,
)
from openfl_like.protocol.director_service import DIRECTOR_RPCS, DIRECTOR_SERVICE, RPC_ROLES
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.director_handlers import DirectorHandler
from openfl_like.transport.director_streams import incoming_files, outgoing_chunks
from openfl_like.transport.health import HealthState
from openfl_like.transport.identity import HeaderChecker, PeerIdentity
from openfl_like.transport.limits import PeerSlots
from openfl_like.transport.observers import (
    ACCEPTED,
    REFUSED,
    ServerObserver,
)
from openfl_like.transport.service_server import ServiceServer, revocation_checker
from openfl_like.transport.settings import MIB, TransportSettings
from openfl_like.transport.status import status_for, translate_errors
from openfl_like.transport.watchdog import Watchdog, expire_call

# The experimenter calls that answer a JSON document: (needs an experiment name, handler call).
_JsonCall = Callable[[DirectorHandler, str, pb.ExperimentRequest], Mapping[str, Any]]
_JSON_RPCS: dict[str, tuple[bool, _JsonCall]] = {
    "GetExperimentsList": (False, lambda h, who, r: h.list_experiments(who)),
    "GetDatasetInfo": (False, lambda h, who, r: h.dataset_info(who)),
    "GetEnvoys": (False, lambda h, who, r: h.envoys(who)),
    "GetExperimentDescription": (
        True, lambda h, who, r: h.describe_experiment(who, r.experiment_name)),
    "GetExperimentStatus": (True, lambda h, who, r: h.experiment_status(who, r.experiment_name)),
    "RemoveExperimentData": (True, lambda h, who, r: h.remove_experiment(who, r.experiment_name)),
    "CancelExperiment": (
        True, lambda h, who, r: h.cancel_experiment(who, r.experiment_name, r.reason)),
}


class DirectorGRPCServer(ServiceServer):
    """The Director service over a handler; ``start()``/``serve()`` put it on the network."""

    SERVICE = DIRECTOR_SERVICE
    RPCS = DIRECTOR_RPCS

    def __init__(
        self,
        handler: DirectorHandler,
        *,
        director_name: str,
        federation_uuid: str,
        tls_files: TlsFiles | None,
        settings: TransportSettings | None = None,
        max_package_bytes: int = 64 * MIB,
        max_feedback_items: int = 1000,
        max_text_bytes: int = 8 * 1024,
        observer: ServerObserver | None = None,
    ) -> None:
        self.settings = settings or TransportSettings()
        if self.settings.tls and tls_files is None:
            raise AuthError("mutual TLS is on: the director needs its certificate files")
        self._handler = handler
        self._observer = observer
        self._tls_files = tls_files if self.settings.tls else None
        self.director_name = director_name
        self.federation_uuid = federation_uuid
        self.max_package_bytes = max_package_bytes
        self.max_feedback_items = max_feedback_items
        self.max_text_bytes = max_text_bytes
        revocation = revocation_checker(self._tls_files)
        self._checker = HeaderChecker(
            server_name=director_name,
            federation_uuid=federation_uuid,
            is_authorized=lambda name: False,  # unused: is_authorized_as asks with the role
            is_authorized_as=handler.is_authorized,
            revocation=revocation,
            tls=self._tls_files is not None,
            role=Role.ENVOY,  # every method names its own role (RPC_ROLES)
        )
        self.polls = PeerSlots("long-polls (WaitExperiment)", self.settings.max_polls_per_peer)
        self.streams = PeerSlots("metric streams", self.settings.max_streams_per_peer)
        self.transfers = PeerSlots("file transfers", self.settings.max_streams_per_peer)
        self._watchdog = Watchdog()
        # grpc.health.v1 on the same port: NOT_SERVING until the application says it is ready
        self.health = HealthState([DIRECTOR_SERVICE])

    def revoked_participants(self) -> frozenset[str]:
        """Names of the envoys/experimenters seen so far whose certificate the CRL revokes."""
        return self._checker.revoked_participants()

    # -- network ---------------------------------------------------------------------------

    def _method(self, name: str) -> Callable[..., Any]:
        return partial(self._json_rpc, name) if name in _JSON_RPCS else getattr(self, name)

    # -- helpers ---------------------------------------------------------------------------

    def _reply_header(self, participant: str) -> base_pb2.MessageHeader:
        return base_pb2.MessageHeader(
            sender=self.director_name, receiver=participant, federation_uuid=self.federation_uuid
        )

    def _authenticate(
        self, rpc: str, raw: bytes, context: grpc.ServicerContext
    ) -> tuple[Any, str, PeerIdentity]:
        """Certificate and role, then parse, then header: (request, caller's name, peer)."""
        role = RPC_ROLES[rpc]
        peer = self._checker.check_peer(context, role=role, rpc=rpc)
        request = DIRECTOR_RPCS[rpc].parse_request(raw)
        name = self._checker.check_header(context, request.header, peer, role=role)
        return request, name, peer

    @contextmanager
    def _errors(self, context: grpc.ServicerContext, rpc: str) -> Iterator[None]:
        """``translate_errors``, telling the observer about a refusal first."""
        with translate_errors(context, rpc):
            try:
                yield
            except Exception as error:
                if self._observer is not None:
                    code, _ = status_for(error)
                    reason = error.code if isinstance(error, OpenflLikeError) else "internal"
                    self._observer.refused(rpc, code.name,
                                           str(getattr(error, "check", "") or reason))
                    if rpc == "SetNewExperiment":
                        self._observer.result(REFUSED, reason)
                raise

    @contextmanager
    def _parked(self) -> Iterator[None]:
        if self._observer is not None:
            self._observer.polls_parked(+1)
        try:
            yield
        finally:
            if self._observer is not None:
                self._observer.polls_parked(-1)

    @staticmethod
    def _hold(slots: PeerSlots, peer: PeerIdentity, name: str) -> Any:
        return slots.hold(peer.fingerprint or f"name:{name}", name)

    @staticmethod
    def _wakeup(context: grpc.ServicerContext) -> Wakeup:
        """A wake-up that grpc cancels when the call ends (cancel, disconnect, deadline)."""
        wakeup = Wakeup()
        if not context.add_callback(wakeup.cancel):  # the call has ended already
            wakeup.cancel()
        return wakeup

    def _first_message(
        self, rpc: str, requests: Iterator[bytes], context: grpc.ServicerContext
    ) -> Any:
        """A client stream's first message, parsed; DeadlineExceededError after
        ``first_message_seconds`` (the watchdog ends the call and frees this worker)."""
        seconds = self.settings.first_message_seconds
        late = f"no first {rpc} message within {seconds:g} s"
        alarm = self._watchdog.arm(seconds, lambda: expire_call(context, late))
        try:
            raw = next(requests, None)
        except grpc.RpcError:
            raw = None
        finally:
            in_time = alarm.disarm()
        if not in_time:
            raise DeadlineExceededError(late)
        if raw is None:
            raise ProtocolError(f"empty {rpc} stream: the first message carries the header")
        message = DIRECTOR_RPCS[rpc].parse_request(raw)
        if not message.HasField("header"):
            raise AuthError(f"the first {rpc} message must carry the header")
        return message

    @staticmethod
    def _rest(rpc: str, requests: Iterator[bytes]) -> Iterator[Any]:
        """The following messages of a client stream, parsed; only the first has a header."""
        try:
            for raw in requests:
                message = DIRECTOR_RPCS[rpc].parse_request(raw)
                if message.HasField("header"):
                    raise ProtocolError(f"{rpc}: only the first message carries a header")
                yield message
        except grpc.RpcError:  # the client went away mid-stream
            raise ProtocolError(f"{rpc} interrupted: the client cancelled the stream") from None

    def _client_stream(
        self, rpc: str, requests: Iterator[bytes], context: grpc.ServicerContext,
        stack: ExitStack,
    ) -> tuple[Any, str]:
        """Certificate, a transfer slot, then the first message and its header."""
        role = RPC_ROLES[rpc]
        peer = self._checker.check_peer(context, role=role, rpc=rpc)
        if peer.fingerprint:  # capped before we wait for anything the caller sends
            stack.enter_context(self.transfers.hold(peer.fingerprint, peer.name))
        first = self._first_message(rpc, requests, context)
        name = self._checker.check_header(context, first.header, peer, role=role)
        if not peer.fingerprint:
            stack.enter_context(self.transfers.hold(f"name:{name}", name))
        return first, name

    # -- envoy RPCs ------------------------------------------------------------------------

    def UpdateShardInfo(self, raw: bytes, context: grpc.ServicerContext) -> Any:
        with self._errors(context, "UpdateShardInfo"):
            request, name, _ = self._authenticate("UpdateShardInfo", raw, context)
            if not request.HasField("shard"):
                raise ProtocolError("UpdateShardInfo: the request has no shard")
            message = self._handler.update_shard_info(name, shard_from_pb(request.shard))
            return pb.UpdateShardInfoResponse(header=self._reply_header(name), accepted=True,
                                              message=message)

    def UpdateEnvoyStatus(self, raw: bytes, context: grpc.ServicerContext) -> Any:
        with self._errors(context, "UpdateEnvoyStatus"):
            request, name, _ = self._authenticate("UpdateEnvoyStatus", raw, context)
            period = self._handler.update_envoy_status(
                name, list(request.running), list(request.awaiting_approval))
            return pb.UpdateEnvoyStatusResponse(header=self._reply_header(name),
                                                heartbeat_seconds=period)

    def WaitExperiment(self, raw: bytes, context: grpc.ServicerContext) -> Any:
        with self._errors(context, "WaitExperiment"):
            request, name, peer = self._authenticate("WaitExperiment", raw, context)
            wait = min(max(request.wait_seconds, 0.0), self.settings.long_poll_seconds)
            with self._hold(self.polls, peer, name), self._parked():
                assignment = self._handler.wait_experiment(
                    name, wait, wakeup=self._wakeup(context))
            return assignment_to_pb(assignment, self._reply_header(name))

    def GetExperimentData(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._errors(context, "GetExperimentData"):
            request, name, peer = self._authenticate("GetExperimentData", raw, context)
            experiment = _required(request.experiment_name, "GetExperimentData")
            with self._hold(self.transfers, peer, name):
                files = self._handler.get_experiment_data(name, experiment)
                yield from outgoing_chunks(files, self._reply_header(name),
                                           self.settings.chunk_size)

    def SetExperimentFailed(self, raw: bytes, context: grpc.ServicerContext) -> Any:
        with self._errors(context, "SetExperimentFailed"):
            request, name, _ = self._authenticate("SetExperimentFailed", raw, context)
            experiment = _required(request.experiment_name, "SetExperimentFailed")
            lines = [truncate_utf8(line, self.max_text_bytes)
                     for line in request.last_log_lines[-self.max_feedback_items:]]
            self._handler.set_experiment_failed(
                name, experiment, request.error_code,
                truncate_utf8(request.error_description, self.max_text_bytes), lines)
            return pb.SetExperimentFailedResponse(header=self._reply_header(name))

    def SendExperimentFeedback(
        self, requests: Iterator[bytes], context: grpc.ServicerContext
    ) -> Any:
        rpc = "SendExperimentFeedback"
        with self._errors(context, rpc), ExitStack() as stack:
            first, name = self._client_stream(rpc, requests, context, stack)
            last_seq = 0
            for message in _chain(first, self._rest(rpc, requests)):
                if len(message.items) > self.max_feedback_items:
                    raise ResourceLimitError(
                        f"{len(message.items)} feedback items in one message, over the limit "
                        f"of {self.max_feedback_items}"
                    )
                experiment = _required(message.experiment_name, rpc)
                items = [feedback_item_from_pb(item, max_text_bytes=self.max_text_bytes)
                         for item in message.items]
                last_seq = self._handler.experiment_feedback(name, experiment, items)
            return pb.ExperimentFeedbackResponse(header=self._reply_header(name),
                                                 last_seq=last_seq)

    # -- experimenter RPCs -----------------------------------------------------------------

    def SetNewExperiment(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
        rpc = "SetNewExperiment"
        with self._errors(context, rpc), ExitStack() as stack:
            first, name = self._client_stream(rpc, requests, context, stack)
            if not first.HasField("submission"):
                raise ProtocolError("the first SetNewExperiment message must carry the submission")
            sub = first.submission
            if sub.total_size < 0:
                raise ProtocolError(f"submission total_size {sub.total_size} is negative")
            if sub.total_size > self.max_package_bytes:  # before any chunk is read
                raise ResourceExhaustedError(
                    f"package of {sub.total_size} bytes is over this director's limit of "
                    f"{self.max_package_bytes} bytes"
                )
            submission = Submission(name=sub.name, kind=experiment_kind(sub.kind),
                                    total_size=sub.total_size)
            files = incoming_files(self._package_chunks(first, requests),
                                   max_total=sub.total_size, expected_total=sub.total_size)
            experiment = self._handler.set_new_experiment(name, submission, files)
            if self._observer is not None:
                self._observer.result(ACCEPTED)
            return pb.SetNewExperimentResponse(
                header=self._reply_header(name), accepted=True, experiment_name=experiment,
                message=f"experiment {experiment!r} accepted")

    def _package_chunks(self, first: Any, requests: Iterator[bytes]) -> Iterator[pb.PackageChunk]:
        for message in _chain(first, self._rest("SetNewExperiment", requests)):
            if message is not first and message.HasField("submission"):
                raise ProtocolError("only the first SetNewExperiment message has the submission")
            if message.HasField("chunk"):
                yield message.chunk

    def _json_rpc(self, rpc: str, raw: bytes, context: grpc.ServicerContext) -> Any:
        with self._errors(context, rpc):
            request, name, _ = self._authenticate(rpc, raw, context)
            needs_experiment, call = _JSON_RPCS[rpc]
            if needs_experiment:
                _required(request.experiment_name, rpc)
            document = call(self._handler, name, request)
            return pb.JsonResponse(header=self._reply_header(name), json=to_json(document))

    def GetMetricStream(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._errors(context, "GetMetricStream"):
            request, name, peer = self._authenticate("GetMetricStream", raw, context)
            experiment = _required(request.experiment_name, "GetMetricStream")
            with self._hold(self.streams, peer, name):
                events = iter(self._handler.metric_stream(
                    name, experiment, max(1, request.from_seq), wakeup=self._wakeup(context)))
                try:
                    header: base_pb2.MessageHeader | None = self._reply_header(name)
                    for event in events:
                        yield event_to_pb(event, header)
                        header = None
                finally:
                    close = getattr(events, "close", None)
                    if close is not None:
                        close()

    def GetTrainedModel(self, raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
        with self._errors(context, "GetTrainedModel"):
            request, name, peer = self._authenticate("GetTrainedModel", raw, context)
            experiment = _required(request.experiment_name, "GetTrainedModel")
            if request.which not in MODEL_CHOICES:
                raise ProtocolError(
                    f"GetTrainedModel: which must be one of {', '.join(MODEL_CHOICES)}, got "
                    f"{request.which!r}"
                )
            with self._hold(self.transfers, peer, name):
                model = self._handler.trained_model(name, experiment, request.which)
                yield from outgoing_chunks([model], self._reply_header(name),
                                           self.settings.chunk_size)


def _required(experiment: str, rpc: str) -> str:
    if not experiment:
        raise ProtocolError(f"{rpc}: experiment_name is required")
    return experiment


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest
