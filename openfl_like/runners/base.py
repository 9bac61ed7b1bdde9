"""The task-runner interface every model backend implements (numpy, Keras).

A runner owns one model and one collaborator's data shard. The federation runtime drives it:
set the global weights, train or validate, read the weights back. Weights are a flat mapping of
stable tensor names to arrays whose dtype and shape never change during a federation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class TaskOutcome:
    """Metrics of one train/validate call and how many samples produced them (FedAvg weight)."""

    metrics: Mapping[str, float]
    data_size: int
    extra: Mapping[str, float] = field(default_factory=dict)


class TaskRunner(Protocol):
    def get_weights(self) -> Weights:
        """Current model weights; names are stable for the runner's lifetime."""
        ...

    def set_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        """Load weights by name; raise ProtocolError on a missing name or a shape/dtype change."""
        ...

    def train(self, *, epochs: int, batch_size: int) -> TaskOutcome:
        """Train on the local training shard; metrics: 'loss' and the model's metrics
        ('accuracy' for the built-in classifiers)."""
        ...

    def validate(self, *, batch_size: int) -> TaskOutcome:
        """Evaluate on the local validation split; metrics as for train()."""
        ...

    def sample_counts(self) -> Mapping[str, int]:
        """Samples of the local data by split ('train', 'valid'): declared at the handshake,
        they bound the weight the aggregator gives this collaborator's results."""
        ...
