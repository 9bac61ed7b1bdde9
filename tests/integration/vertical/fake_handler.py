"""A VerticalHandler that records what arrived, and can be told to refuse."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from openfl_like.core.errors import OpenflLikeError
from openfl_like.core.vertical import Control, Hello, StepTensor


@dataclass
class RecordingHandler:
    hellos: list[Hello] = field(default_factory=list)
    tensors: list[StepTensor] = field(default_factory=list)
    controls: list[Control] = field(default_factory=list)
    refuse: OpenflLikeError | None = None  # raised by every method when set
    gate: threading.Event | None = None  # on_tensor waits for it when set
    refusals: list[OpenflLikeError] = field(default_factory=list)  # Connects the server refused

    def on_connect(self, hello: Hello) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.hellos.append(hello)

    def on_tensor(self, tensor: StepTensor) -> None:
        if self.gate is not None:
            self.gate.wait(5)
        if self.refuse is not None:
            raise self.refuse
        self.tensors.append(tensor)

    def on_control(self, control: Control) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.controls.append(control)

    def on_refused(self, error: OpenflLikeError) -> None:
        self.refusals.append(error)
