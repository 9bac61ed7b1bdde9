from __future__ import annotations

import numpy as np
import pytest

from openfl_like.core.errors import ProtocolError
from openfl_like.federation.validation import ModelSpec, check_data_size, check_metrics

SPEC = ModelSpec.of({"w": np.zeros((2, 2), np.float32), "n": np.array(0, np.int64)})


def test_good_tensor_passes() -> None:
    SPEC.check_tensor("w", np.ones((2, 2), np.float32))
    SPEC.check_complete(["w", "n"])


@pytest.mark.parametrize(
    ("name", "array", "reason"),
    [
        ("x", np.ones((2, 2), np.float32), "not part of the model"),
        ("w", np.ones((2, 2), np.float64), "dtype float64"),
        ("w", np.ones((4,), np.float32), "shape (4,)"),
        ("w", np.array([[1, np.nan], [0, 0]], np.float32), "NaN or infinite"),
        ("w", np.array([[1, np.inf], [0, 0]], np.float32), "NaN or infinite"),
    ],
)
def test_bad_tensor_refused_with_reason(name: str, array: np.ndarray, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        SPEC.check_tensor(name, array)


def test_duplicate_and_missing_tensors() -> None:
    with pytest.raises(ProtocolError, match="sent twice"):
        SPEC.check_tensor("w", np.ones((2, 2), np.float32), seen=["w"])
    with pytest.raises(ProtocolError, match="missing 1 tensor"):
        SPEC.check_complete(["w"])


def test_metrics_and_sizes() -> None:
    assert check_metrics({"loss": np.float32(0.5)}) == {"loss": 0.5}
    with pytest.raises(ProtocolError, match="not finite"):
        check_metrics({"loss": float("nan")})
    with pytest.raises(ProtocolError, match="> 0"):
        check_data_size(0, needs_positive=True)
    assert check_data_size(0, needs_positive=False) == 0
