"""The Director service's methods, their (de)serializers and the certificate role each needs.

Built like :mod:`.service` (the aggregator's table; a test checks this one against
``director.proto``). Every request, including each message of the two client streams, reaches
the server as raw bytes and is parsed by the servicer with :meth:`Rpc.parse_request` after the
caller's certificate was checked: garbage becomes INVALID_ARGUMENT and leaves nothing behind
(the reason is in :mod:`.service`'s docstring). Clients serialize with the generated classes.
"""

from __future__ import annotations

from openfl_like.core.ids import Role
from openfl_like.protocol import director_pb2 as pb
from openfl_like.protocol.service import (
    STREAM_UNARY,
    UNARY_STREAM,
    UNARY_UNARY,
    Rpc,
    message_rpc,
)

DIRECTOR_SERVICE = "openfl_like.v1.Director"


def _rpc(name: str, request: object, response: object, kind: str = UNARY_UNARY) -> Rpc:
    return message_rpc(name, request, response, service=DIRECTOR_SERVICE, kind=kind)


# The role a caller's certificate must carry, per method (director.proto's two sections).
ENVOY_RPCS: tuple[Rpc, ...] = (
    _rpc("UpdateShardInfo", pb.UpdateShardInfoRequest, pb.UpdateShardInfoResponse),
    _rpc("UpdateEnvoyStatus", pb.UpdateEnvoyStatusRequest, pb.UpdateEnvoyStatusResponse),
    _rpc("WaitExperiment", pb.WaitExperimentRequest, pb.WaitExperimentResponse),
    _rpc("GetExperimentData", pb.GetExperimentDataRequest, pb.PackageChunk, UNARY_STREAM),
    _rpc("SetExperimentFailed", pb.SetExperimentFailedRequest, pb.SetExperimentFailedResponse),
    _rpc("SendExperimentFeedback", pb.ExperimentFeedback, pb.ExperimentFeedbackResponse,
         STREAM_UNARY),
)
EXPERIMENTER_RPCS: tuple[Rpc, ...] = (
    _rpc("SetNewExperiment", pb.SetNewExperimentRequest, pb.SetNewExperimentResponse,
         STREAM_UNARY),
    _rpc("GetExperimentsList", pb.ExperimentRequest, pb.JsonResponse),
    _rpc("GetExperimentDescription", pb.ExperimentRequest, pb.JsonResponse),
    _rpc("GetExperimentStatus", pb.ExperimentRequest, pb.JsonResponse),
    _rpc("GetDatasetInfo", pb.ExperimentRequest, pb.JsonResponse),
    _rpc("GetEnvoys", pb.ExperimentRequest, pb.JsonResponse),
    _rpc("GetMetricStream", pb.GetMetricStreamRequest, pb.ExperimentEvent, UNARY_STREAM),
    _rpc("GetTrainedModel", pb.GetTrainedModelRequest, pb.PackageChunk, UNARY_STREAM),
    _rpc("RemoveExperimentData", pb.ExperimentRequest, pb.JsonResponse),
    _rpc("CancelExperiment", pb.ExperimentRequest, pb.JsonResponse),
)

DIRECTOR_RPCS: dict[str, Rpc] = {rpc.name: rpc for rpc in (*ENVOY_RPCS, *EXPERIMENTER_RPCS)}

RPC_ROLES: dict[str, Role] = {
    **{rpc.name: Role.ENVOY for rpc in ENVOY_RPCS},
    **{rpc.name: Role.EXPERIMENTER for rpc in EXPERIMENTER_RPCS},
}
