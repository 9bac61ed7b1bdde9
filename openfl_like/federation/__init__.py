"""Federation runtime: the aggregator's rounds and the collaborator loop. No gRPC here."""

from openfl_like.federation.aggregator import Aggregator
from openfl_like.federation.collaborator import (
    AggregatorPort,
    Collaborator,
    CollaboratorSettings,
    CollaboratorSummary,
)

__all__ = [
    "Aggregator",
    "AggregatorPort",
    "Collaborator",
    "CollaboratorSettings",
    "CollaboratorSummary",
]
