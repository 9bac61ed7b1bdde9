"""Status mapping both ways, settings from a plan section and FX_* overrides, failure wording."""

from __future__ import annotations

import grpc
import pytest

from openfl_like.core import errors
from openfl_like.protocol import aggregator_pb2
from openfl_like.protocol.service import AGGREGATOR_RPCS, STREAM_UNARY, UNARY_STREAM
from openfl_like.transport import status
from openfl_like.transport.aggregator_client import describe_failure
from openfl_like.transport.settings import MIB, TransportSettings, parse_size

Code = grpc.StatusCode

MAPPING = [
    (errors.AuthError, Code.UNAUTHENTICATED),
    (errors.PermissionDeniedError, Code.PERMISSION_DENIED),
    (errors.PlanMismatchError, Code.FAILED_PRECONDITION),
    (errors.ProtocolError, Code.INVALID_ARGUMENT),
    (errors.NotFoundError, Code.NOT_FOUND),
    (errors.FederationError, Code.ABORTED),
    (errors.ResourceExhaustedError, Code.RESOURCE_EXHAUSTED),
    (errors.UnavailableError, Code.UNAVAILABLE),
    (errors.DeadlineExceededError, Code.DEADLINE_EXCEEDED),
]


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(("error_type", "code"), MAPPING)
def test_errors_map_to_status_and_back(error_type: type[errors.OpenflLikeError], code) -> None:
    assert status.status_for(error_type("why")) == (code, "why")
    back = status.error_from_rpc(FakeRpcError(code, "why"), what="call")
    assert type(back) is error_type and str(back) == "call: why"
    assert back.status_code is code  # type: ignore[attr-defined]


def test_every_error_kind_has_its_own_code() -> None:
    codes = [code for _, code in MAPPING]
    assert len(set(codes)) == len(codes)
    # only a plan mismatch may reach a client as FAILED_PRECONDITION
    for error_type, code in MAPPING:
        assert (code is Code.FAILED_PRECONDITION) == (error_type is errors.PlanMismatchError)


def test_federation_failure_is_not_a_plan_mismatch() -> None:
    code, message = status.status_for(errors.FederationError("aggregation failed: weights sum 0"))
    assert code is Code.ABORTED and message == "aggregation failed: weights sum 0"
    back = status.error_from_rpc(FakeRpcError(code, message))
    assert type(back) is errors.FederationError and not isinstance(back, errors.PlanMismatchError)
    assert not status.is_retryable(FakeRpcError(code, message))


def test_size_limit_is_invalid_argument_and_final() -> None:
    code, message = status.status_for(errors.ResourceLimitError("tensor over the limit"))
    assert code is Code.INVALID_ARGUMENT and message == "tensor over the limit"
    assert isinstance(errors.ResourceLimitError("x"), errors.ProtocolError)


def test_other_errors() -> None:
    assert status.status_for(errors.ConfigError("bad CRL path")) == (Code.INTERNAL, "bad CRL path")
    assert status.status_for(KeyError("secret")) == (Code.INTERNAL, status.INTERNAL_MESSAGE)
    unavailable = status.error_from_rpc(FakeRpcError(Code.UNAVAILABLE, "down"))
    assert isinstance(unavailable, errors.ConnectionFailedError)
    assert Code.UNAUTHENTICATED in status.FATAL_CODES and Code.UNAVAILABLE in status.RETRYABLE_CODES


@pytest.mark.parametrize(("code", "details", "retry"), [
    (Code.UNAVAILABLE, "disk full", True),
    (Code.DEADLINE_EXCEEDED, "late", True),
    (Code.RESOURCE_EXHAUSTED, "col-a has 4 streams open", True),
    (Code.RESOURCE_EXHAUSTED, "Received message larger than max (9 vs. 5)", False),
    (Code.INVALID_ARGUMENT, "bad", False),
    (Code.ABORTED, "federation failed", False),
    (Code.PERMISSION_DENIED, "no", False),
])  # fmt: skip
def test_retryable_codes(code, details, retry) -> None:
    assert status.is_retryable(FakeRpcError(code, details)) is retry
    assert not status.is_retryable(RuntimeError("not an rpc error"))


def test_retryable_and_fatal_codes_are_disjoint() -> None:
    assert not status.RETRYABLE_CODES & status.FATAL_CODES


@pytest.mark.parametrize(("details", "expected"), [
    ("errors resolving x:1: Domain name not found", "DNS resolution"),
    ("ipv4:127.0.0.1:1: Failed to connect to remote host: Connection refused", "TCP connect"),
    ("Tls handshake failed: CERTIFICATE_VERIFY_FAILED: unable to get local issuer", "CA bundle"),
    ("Custom verification check failed: Hostname Verification Check failed.", "SAN mismatch"),
    ("ipv4:127.0.0.1:5: Socket closed", "client certificate"),
])  # fmt: skip
def test_connection_failures_are_described(details: str, expected: str) -> None:
    assert expected in describe_failure(FakeRpcError(Code.UNAVAILABLE, details), "h:1")


def test_settings_defaults_and_plan_section() -> None:
    default = TransportSettings()
    assert default.tls and default.chunk_size == 4 * MIB
    assert default.max_message_bytes == 5 * MIB
    # the sync server parks a thread per long-poll: 1000 collaborators must fit with room to spare
    assert default.server_workers >= 1024 + 256 and default.long_poll_slice_seconds == 1.0
    plan = TransportSettings.from_mapping(
        {"agg_addr": "x", "use_tls": True, "chunk_size": "8MiB", "keepalive": {"time_seconds": 5},
         "retry": {"total_seconds": 20}},
        env={},
    )  # fmt: skip
    assert plan.chunk_size == 8 * MIB and plan.max_message_bytes == 9 * MIB
    assert plan.keepalive.time_seconds == 5 and plan.retry.total_seconds == 20


def test_environment_overrides() -> None:
    env = {"FX_CHUNK_SIZE": "1MiB", "FX_TLS": "off", "FX_RETRY_TOTAL_SECONDS": "7",
           "FX_KEEPALIVE_SECONDS": "11", "FX_RPC_TIMEOUT": "3",
           "FX_LONG_POLL_SLICE_SECONDS": "0.25", "FX_SERVER_WORKERS": "2048"}  # fmt: skip
    settings = TransportSettings.from_mapping({"chunk_size": "8MiB"}, env=env)
    assert settings.chunk_size == MIB and settings.max_message_bytes == 2 * MIB
    assert settings.tls is False and settings.retry.total_seconds == 7
    assert settings.keepalive.time_seconds == 11 and settings.rpc_timeout_seconds == 3
    assert settings.long_poll_slice_seconds == 0.25 and settings.server_workers == 2048


def test_hostile_client_settings_defaults_and_overrides() -> None:
    default = TransportSettings()
    assert default.first_message_seconds == 10.0
    assert (default.max_streams_per_peer, default.max_polls_per_peer) == (4, 2)
    assert default.max_tensor_names_per_request == 10000
    env = {"FX_FIRST_MESSAGE_SECONDS": "2.5", "FX_MAX_STREAMS_PER_PEER": "8",
           "FX_MAX_POLLS_PER_PEER": "3", "FX_MAX_TENSOR_NAMES": "50"}  # fmt: skip
    settings = TransportSettings.from_mapping({"max_polls_per_peer": 1}, env=env)
    assert settings.first_message_seconds == 2.5 and settings.max_streams_per_peer == 8
    assert settings.max_polls_per_peer == 3 and settings.max_tensor_names_per_request == 50


@pytest.mark.parametrize("section", [
    {"chunk_sise": 1}, {"chunk_size": "lots"}, {"tls": "maybe"}, {"chunk_size": 0},
    {"chunk_size": 4 * MIB, "max_message_bytes": 4 * MIB}, {"keepalive": {"nope": 1}},
    {"long_poll_slice_seconds": 0}, {"first_message_seconds": 0}, {"max_streams_per_peer": 0},
    {"max_polls_per_peer": 0}, {"max_tensor_names_per_request": 0},
])  # fmt: skip
def test_invalid_settings_name_the_key(section: dict) -> None:
    with pytest.raises(errors.ConfigError, match="network"):
        TransportSettings.from_mapping(section, env={})


def test_parse_size() -> None:
    assert parse_size("64MB", "x") == 64_000_000 and parse_size("1GiB", "x") == 1 << 30


def test_method_table_matches_the_proto_service() -> None:
    service = aggregator_pb2.DESCRIPTOR.services_by_name["Aggregator"]
    assert set(AGGREGATOR_RPCS) == {m.name for m in service.methods}
    for method in service.methods:
        rpc = AGGREGATOR_RPCS[method.name]
        assert (rpc.kind == UNARY_STREAM) == method.server_streaming
        assert (rpc.kind == STREAM_UNARY) == method.client_streaming
        assert rpc.path == f"/{service.full_name}/{method.name}"


def test_client_role_from_plan_and_environment() -> None:
    assert TransportSettings().client_role == "collaborator"
    assert TransportSettings.from_mapping({"client_role": "envoy"}, env={}).client_role == "envoy"
    from_env = TransportSettings.from_mapping({}, env={"FX_CLIENT_ROLE": "envoy"})
    assert from_env.client_role == "envoy"
    with pytest.raises(errors.ConfigError, match=r"network\.client_role: must be one of "
                       r"collaborator, envoy, got 'director'"):
        TransportSettings.from_mapping({}, env={"FX_CLIENT_ROLE": "director"})
