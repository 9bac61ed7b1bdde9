"""The Keras callback drives initialize / add_step / shutdown from model.fit."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from .conftest import make_pair


@pytest.mark.keras
def test_fit_initializes_steps_per_batch_and_shuts_down() -> None:
    from openfl_like.vertical import CommunicatorCallback
    from openfl_like.vertical.keras_hook import keras

    leader, follower = make_pair()
    peer = threading.Thread(target=follower.initialize)
    peer.start()
    keras.utils.set_random_seed(0)  # the project's TensorFlow runs with op determinism on
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((6, 4), np.float32), np.zeros((6, 1), np.float32)
    keep = CommunicatorCallback(leader, shutdown_on_end=False)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False,
              callbacks=[keep])
    assert leader.step == 3 and not leader.closed
    model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False,
              callbacks=[CommunicatorCallback(leader)])
    assert leader.step == 6 and leader.closed
    peer.join(5)
    follower.shutdown()
