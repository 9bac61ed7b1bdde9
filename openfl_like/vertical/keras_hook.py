"""The Keras hook of the vertical communicator (EFL's ``CommunicatorHook`` for sessions):
initialise when training starts, advance the step after every batch, shut down when it ends.

TensorFlow is imported the project's quiet way, through ``runners.keras_runner`` (start-up
noise filtered, few threads, deterministic kernels); ``openfl_like.vertical`` imports this module
only when ``CommunicatorCallback`` is asked for.
"""

from __future__ import annotations

from typing import Any

from openfl_like.core.logging import get_logger
from openfl_like.runners import keras_runner
from openfl_like.vertical.communicator import Communicator

keras = keras_runner.keras
_log = get_logger(__name__)


class CommunicatorCallback(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
    """Drives a :class:`Communicator` from ``model.fit``.

    ``shutdown_on_end=False`` keeps the communicator for later ``fit``/``evaluate`` calls (the
    caller shuts it down); ``initialize`` is skipped when it already runs.
    """

    def __init__(self, communicator: Communicator, *, shutdown_on_end: bool = True,
                 reason: str = "training finished") -> None:
        super().__init__()
        self.communicator = communicator
        self.shutdown_on_end = shutdown_on_end
        self.reason = reason

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.communicator.initialize()  # a no-op when already running

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.communicator.add_step()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self.shutdown_on_end:
            self.communicator.shutdown(self.reason)
        else:
            _log.debug("training ended at step %d; communicator %s kept",
                       self.communicator.step, self.communicator.name)
