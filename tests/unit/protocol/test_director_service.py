"""The director's method table must match director.proto: names, streaming kinds, paths, roles."""

from __future__ import annotations

from openfl_like.core.ids import Role
from openfl_like.protocol import director_pb2
from openfl_like.protocol.director_service import (
    DIRECTOR_RPCS,
    DIRECTOR_SERVICE,
    ENVOY_RPCS,
    RPC_ROLES,
)
from openfl_like.protocol.service import AGGREGATOR_RPCS, STREAM_UNARY, UNARY_STREAM


def test_method_table_matches_the_proto_service() -> None:
    service = director_pb2.DESCRIPTOR.services_by_name["Director"]
    assert service.full_name == DIRECTOR_SERVICE
    assert set(DIRECTOR_RPCS) == {m.name for m in service.methods}
    for method in service.methods:
        rpc = DIRECTOR_RPCS[method.name]
        assert (rpc.kind == UNARY_STREAM) == method.server_streaming, method.name
        assert (rpc.kind == STREAM_UNARY) == method.client_streaming, method.name
        assert rpc.path == f"/{service.full_name}/{method.name}"
        # requests and responses (de)serialize the proto's own message types
        request = getattr(director_pb2, method.input_type.name)
        response = getattr(director_pb2, method.output_type.name)
        assert rpc.deserialize_request(request().SerializeToString()).DESCRIPTOR is (
            method.input_type)
        assert rpc.deserialize_response(response().SerializeToString()).DESCRIPTOR is (
            method.output_type)
        assert rpc.server_request_deserializer is None  # parsed after the certificate check


def test_every_method_has_a_role_and_envoy_methods_are_the_proto_envoy_section() -> None:
    assert set(RPC_ROLES) == set(DIRECTOR_RPCS)
    assert {name for name, role in RPC_ROLES.items() if role is Role.ENVOY} == {
        "UpdateShardInfo", "UpdateEnvoyStatus", "WaitExperiment", "GetExperimentData",
        "SetExperimentFailed", "SendExperimentFeedback"}
    assert {rpc.name for rpc in ENVOY_RPCS} == {
        n for n, r in RPC_ROLES.items() if r is Role.ENVOY}
    assert set(RPC_ROLES.values()) == {Role.ENVOY, Role.EXPERIMENTER}


def test_aggregator_paths_keep_their_own_service() -> None:
    assert AGGREGATOR_RPCS["GetTasks"].path == "/openfl_like.v1.Aggregator/GetTasks"
    assert DIRECTOR_RPCS["GetEnvoys"].path == "/openfl_like.v1.Director/GetEnvoys"
