"""DirectorClient: one mutual-TLS channel to the director, for an envoy or an experimenter.

It satisfies both ``director.ports`` Protocols (``EnvoyDirectorPort`` and
``ExperimenterDirectorPort``); which methods the director lets a caller use depends on the
role of its certificate. Every call has a deadline; UNAVAILABLE and DEADLINE_EXCEEDED are retried
with the ``RetryPolicy`` (backoff with jitter, total deadline, then one ``ConnectionFailedError``
saying what failed); every other failure is raised at once as the matching ``core.errors``
exception (``status.error_from_rpc``): AuthError, PermissionDeniedError, ProtocolError,
ResourceExhaustedError (an oversize package, a per-peer cap), NotFoundError, ...
Every reply's header is checked (``identity.check_reply_header``).

Downloads are written through temporary files and checked (size, sha256, plain names, a byte
budget) before they replace anything; uploads are read from disk chunk by chunk. A retried call
starts over (a download is written afresh, an upload re-read from its files, feedback items are
recognised by their sequence numbers). ``metric_stream`` reconnects on its own after a broken
stream and resumes after the last event it yielded.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc

from openfl_like.core.errors import ConnectionFailedError, OpenflLikeError, ProtocolError
from openfl_like.core.experiments import (
    EnvoyAssignment,
    ExperimentEvent,
    ExperimentKind,
    FeedbackItem,
    ShardInfo,
    Submission,
)
from openfl_like.core.logging import get_logger
from openfl_like.protocol import base_pb2
from openfl_like.protocol import director_pb2 as pb
from openfl_like.protocol.director_convert import (
    assignment_from_pb,
    check_file_name,
    event_from_pb,
    feedback_item_to_pb,
    from_json,
    shard_to_pb,
)
from openfl_like.protocol.director_service import DIRECTOR_RPCS
from openfl_like.transport.aggregator_client import channel_options, describe_failure
from openfl_like.transport.credentials import TlsFiles, channel_credentials
from openfl_like.transport.director_streams import (
    LocalFile,
    file_digest,
    incoming_files,
    submission_requests,
    write_file,
)
from openfl_like.transport.hostname import hostname_mismatch_error, is_hostname_mismatch
from openfl_like.transport.identity import check_reply_header
from openfl_like.transport.retry import RetryExhausted, RetryPolicy
from openfl_like.transport.server import INSECURE_WARNING
from openfl_like.transport.settings import TransportSettings
from openfl_like.transport.status import error_from_rpc

T = TypeVar("T")
_log = get_logger(__name__)

RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# A metric stream that ends with one of these was broken (server gone, connection lost), not
# refused: reconnect. CANCELLED: the server was stopped under the call (we never cancel a call
# we still read).
_BROKEN_STREAM = RETRIED | {grpc.StatusCode.CANCELLED}
_BROKEN_DETAILS = ("stream removed", "rst_stream", "socket closed", "connection reset")
FEEDBACK_BATCH = 1000  # items per message (the director's default limit)


def _code(error: BaseException) -> grpc.StatusCode | None:
    code = getattr(error, "code", None)
    return code() if callable(code) else None


def _retryable(error: BaseException) -> bool:
    """UNAVAILABLE/DEADLINE_EXCEEDED, except a server certificate that does not name the host
    dialled (``hostname``): a configuration error no retry can change."""
    return (isinstance(error, grpc.RpcError) and _code(error) in RETRIED
            and not is_hostname_mismatch(error))


def _broken(error: grpc.RpcError) -> bool:
    if _code(error) in _BROKEN_STREAM:
        return True
    details = getattr(error, "details", None)
    text = (details() if callable(details) else "") or ""
    return _code(error) in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL) and any(
        marker in text.lower() for marker in _BROKEN_DETAILS)


class DirectorClient:
    """Talks to one director as one envoy or experimenter; see the module docstring."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        name: str,
        director_name: str,
        federation_uuid: str,
        tls_files: TlsFiles | None,
        settings: TransportSettings | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings or TransportSettings()
        if self.settings.tls and tls_files is None:
            raise ConnectionFailedError("mutual TLS is on: the client needs its certificate")
        self.target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._host, self._port = host, port
        self.name = name
        self._tls_files = tls_files if self.settings.tls else None
        self._retry = retry or RetryPolicy.from_settings(self.settings.retry)
        self._header = base_pb2.MessageHeader(
            sender=name, receiver=director_name, federation_uuid=federation_uuid)
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._calls: dict[str, Any] = {}

    # -- channel lifecycle -----------------------------------------------------------------

    def connect(self) -> DirectorClient:
        """Open the channel (idempotent); the connection is made on the first call."""
        with self._lock:
            if self._channel is None:
                options = channel_options(self.settings)
                if self._tls_files is None:
                    _log.warning(INSECURE_WARNING)
                    channel = grpc.insecure_channel(self.target, options=options)
                else:
                    channel = grpc.secure_channel(
                        self.target, channel_credentials(self._tls_files), options)
                self._channel = channel
                self._calls = {
                    name: getattr(channel, rpc.kind)(
                        rpc.path, request_serializer=rpc.serialize_request,
                        response_deserializer=rpc.deserialize_response)
                    for name, rpc in DIRECTOR_RPCS.items()
                }
        return self

    def close(self) -> None:
        with self._lock:
            channel, self._channel, self._calls = self._channel, None, {}
        if channel is not None:
            channel.close()

    def __enter__(self) -> DirectorClient:
        return self.connect()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.close()

    def _call(self, rpc: str) -> Any:
        if self._channel is None:
            self.connect()
        return self._calls[rpc]

    # -- plumbing --------------------------------------------------------------------------

    def _with_retry(self, what: str, operation: Callable[[], T]) -> T:
        try:
            return self._retry.call(operation, is_retryable=_retryable, describe=what)
        except RetryExhausted as exhausted:
            raise ConnectionFailedError(
                f"{what} failed after {exhausted.attempts} attempts in "
                f"{exhausted.elapsed:.0f}s: {self._reason(exhausted.last)}"
            ) from None
        except grpc.RpcError as error:
            if is_hostname_mismatch(error):
                raise self._hostname_error(error, what) from None
            raise error_from_rpc(error, what=what) from None

    def _hostname_error(self, error: grpc.RpcError, what: str) -> OpenflLikeError:
        return hostname_mismatch_error(
            error, what=what, server="director", host=self._host, port=self._port,
            dialled=self.settings.target_name_override or self._host, tls_files=self._tls_files,
        )

    def _reason(self, error: BaseException) -> str:
        if isinstance(error, grpc.RpcError):
            return describe_failure(error, self.target, server="director")
        return str(error)

    def _check(self, response: Any, what: str) -> None:
        header = response.header if response.HasField("header") else None
        check_reply_header(header, self._header, what, server="director")

    def _unary(self, rpc: str, request: Any, what: str, timeout: float | None = None) -> Any:
        seconds = timeout or self.settings.rpc_timeout_seconds
        response = self._with_retry(what, lambda: self._call(rpc)(request, timeout=seconds))
        self._check(response, what)
        return response

    def _json(self, rpc: str, what: str, experiment: str = "", reason: str = "") -> dict[str, Any]:
        request = pb.ExperimentRequest(header=self._header, experiment_name=experiment,
                                       reason=reason)
        return from_json(self._unary(rpc, request, what).json, what)

    def _chunks(self, call: Any, what: str) -> Iterator[pb.PackageChunk]:
        """A PackageChunk stream whose first message's header is checked; the call is
        cancelled when the reader stops early."""
        first = True
        try:
            for message in call:
                if first:
                    self._check(message, what)
                    first = False
                yield message
            if first:
                raise ProtocolError(f"{what}: the director sent no reply")
        finally:
            call.cancel()

    # -- envoy (EnvoyDirectorPort) ---------------------------------------------------------

    def update_shard_info(self, shard: ShardInfo) -> str:
        request = pb.UpdateShardInfoRequest(header=self._header, shard=shard_to_pb(shard))
        response = self._unary("UpdateShardInfo", request, "update shard info")
        return str(response.message)

    def update_envoy_status(
        self, running: Sequence[str], awaiting_approval: Sequence[str]
    ) -> float:
        request = pb.UpdateEnvoyStatusRequest(header=self._header, running=list(running),
                                              awaiting_approval=list(awaiting_approval))
        return float(self._unary("UpdateEnvoyStatus", request,
                                 "update envoy status").heartbeat_seconds)

    def wait_experiment(self, wait_seconds: float) -> EnvoyAssignment:
        request = pb.WaitExperimentRequest(header=self._header, wait_seconds=wait_seconds)
        timeout = max(wait_seconds, 0.0) + self.settings.rpc_timeout_seconds
        response = self._unary("WaitExperiment", request, "wait experiment", timeout)
        return assignment_from_pb(response)

    def get_experiment_data(self, experiment: str, dest: Path, *, max_bytes: int) -> list[Path]:
        request = pb.GetExperimentDataRequest(header=self._header, experiment_name=experiment)
        folder = Path(dest)
        folder.mkdir(parents=True, exist_ok=True)

        def download() -> list[Path]:
            call = self._call("GetExperimentData")(
                request, timeout=self.settings.stream_timeout_seconds)
            written: list[Path] = []
            try:
                chunks = self._chunks(call, "get experiment data")
                for file in incoming_files(chunks, max_total=max_bytes):
                    written.append(write_file(file, folder / file.path))
            except BaseException:
                for path in written:  # all or nothing: no half package is left behind
                    path.unlink(missing_ok=True)
                raise
            return written

        return self._with_retry("get experiment data", download)

    def set_experiment_failed(
        self, experiment: str, code: int, description: str, last_log_lines: Sequence[str]
    ) -> None:
        request = pb.SetExperimentFailedRequest(
            header=self._header, experiment_name=experiment, error_code=code,
            error_description=description, last_log_lines=list(last_log_lines))
        self._unary("SetExperimentFailed", request, "set experiment failed")

    def send_feedback(self, experiment: str, items: Sequence[FeedbackItem]) -> int:
        """One stream of batches of at most ``FEEDBACK_BATCH`` items; a retry re-sends all of
        them, which the director recognises by their sequence numbers."""
        converted = [feedback_item_to_pb(item) for item in items]

        def messages() -> Iterator[pb.ExperimentFeedback]:
            header: base_pb2.MessageHeader | None = self._header
            for start in range(0, max(len(converted), 1), FEEDBACK_BATCH):
                yield pb.ExperimentFeedback(header=header, experiment_name=experiment,
                                            items=converted[start:start + FEEDBACK_BATCH])
                header = None

        response = self._with_retry("send feedback", lambda: self._call(
            "SendExperimentFeedback")(messages(), timeout=self.settings.stream_timeout_seconds))
        self._check(response, "send feedback")
        return int(response.last_seq)

    # -- experimenter (ExperimenterDirectorPort) -------------------------------------------

    def submit(self, name: str, kind: ExperimentKind, files: Mapping[str, Path]) -> str:
        """Stream the package (file name -> local path); returns the experiment's name."""
        local = []
        for file_name, path in files.items():
            size, sha256 = file_digest(Path(path))
            local.append(LocalFile(check_file_name(file_name), Path(path), size, sha256))
        submission = Submission(name=name, kind=ExperimentKind(kind),
                                total_size=sum(f.size for f in local))

        def upload() -> Any:
            failure: list[OpenflLikeError] = []

            def requests() -> Iterator[pb.SetNewExperimentRequest]:
                try:
                    yield from submission_requests(self._header, submission, local,
                                                   self.settings.chunk_size)
                except OpenflLikeError as exc:  # end the stream; raised below instead
                    failure.append(exc)

            try:
                response = self._call("SetNewExperiment")(
                    requests(), timeout=self.settings.stream_timeout_seconds)
            except grpc.RpcError:
                if failure:
                    raise failure[0] from None
                raise
            if failure:
                raise failure[0]
            return response

        response = self._with_retry("submit experiment", upload)
        self._check(response, "submit experiment")
        if not response.accepted:
            raise ProtocolError(f"submission refused: {response.message}")
        return str(response.experiment_name)

    def list_experiments(self) -> dict[str, Any]:
        return self._json("GetExperimentsList", "list experiments")

    def describe_experiment(self, experiment: str) -> dict[str, Any]:
        return self._json("GetExperimentDescription", "describe experiment", experiment)

    def experiment_status(self, experiment: str) -> dict[str, Any]:
        return self._json("GetExperimentStatus", "experiment status", experiment)

    def dataset_info(self) -> dict[str, Any]:
        return self._json("GetDatasetInfo", "dataset info")

    def envoys(self) -> dict[str, Any]:
        return self._json("GetEnvoys", "envoys")

    def remove_experiment(self, experiment: str) -> dict[str, Any]:
        return self._json("RemoveExperimentData", "remove experiment", experiment)

    def cancel_experiment(self, experiment: str, reason: str = "") -> dict[str, Any]:
        return self._json("CancelExperiment", "cancel experiment", experiment, reason)

    def trained_model(self, experiment: str, which: str, dest: Path) -> Path:
        request = pb.GetTrainedModelRequest(header=self._header, experiment_name=experiment,
                                            which=which)
        target = Path(dest)
        limit = self.settings.max_model_bytes or sys.maxsize

        def download() -> Path:
            call = self._call("GetTrainedModel")(
                request, timeout=self.settings.stream_timeout_seconds)
            written: Path | None = None
            for file in incoming_files(self._chunks(call, "trained model"), max_total=limit):
                if written is not None:
                    written.unlink(missing_ok=True)
                    raise ProtocolError("trained model: the director sent more than one file")
                written = write_file(file, target)
            if written is None:
                raise ProtocolError("trained model: the director sent no file")
            return written

        return self._with_retry("trained model", download)

    def metric_stream(self, experiment: str, from_seq: int = 1) -> Iterator[ExperimentEvent]:
        """Events in order from ``from_seq``; after a broken stream it reconnects with backoff
        (bounded by the retry policy's total time since the last event) and asks again from
        the event after the last one it yielded, so no sequence number is yielded twice."""
        next_seq = max(1, from_seq)
        attempt, broken_since = 0, 0.0
        while True:
            request = pb.GetMetricStreamRequest(header=self._header, experiment_name=experiment,
                                                from_seq=next_seq)
            call = self._call("GetMetricStream")(
                request, timeout=self.settings.stream_timeout_seconds)
            try:
                first = True
                for message in call:
                    if first:
                        self._check(message, "metric stream")
                        first = False
                    event = event_from_pb(message)
                    attempt = 0
                    if event.seq < next_seq:
                        continue  # already yielded before a reconnect
                    next_seq = event.seq + 1
                    yield event
                return
            except grpc.RpcError as error:
                if is_hostname_mismatch(error):
                    raise self._hostname_error(error, "metric stream") from None
                if not _broken(error):
                    raise error_from_rpc(error, what="metric stream") from None
                now = self._retry.clock()
                if attempt == 0:
                    broken_since = now
                wait = self._retry.rng.uniform(0.0, self._retry.cap(attempt))
                if now - broken_since + wait > self._retry.total_seconds:
                    raise ConnectionFailedError(
                        f"metric stream of {experiment!r}: no reconnect after {attempt + 1} "
                        f"attempts: {self._reason(error)}") from None
                _log.info("metric stream of %s broken (%s); reconnecting from seq %d in %.2fs",
                          experiment, _code(error), next_seq, wait)
                attempt += 1
                self._retry.sleep(wait)
            finally:
                call.cancel()


__all__ = ["DirectorClient"]
