"""Package checks: what a director refuses to run, and what it accepts."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openfl_like.core.errors import (
    ConfigError,
    PlanError,
    ProtocolError,
    ResourceLimitError,
)
from openfl_like.core.experiments import ExperimentKind
from openfl_like.director.package import receive_and_check
from tests.unit.director.conftest import incoming, package, plan_doc


def _check(tmp_path: Path, files: Any, *, kind: ExperimentKind = ExperimentKind.TRAIN,
           max_bytes: int = 1 << 20) -> Any:
    return receive_and_check(files, tmp_path / "staging", kind=kind, max_bytes=max_bytes)


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_a_good_package_is_accepted(tmp_path: Path) -> None:
    model = _npz(w=np.zeros((4, 2), np.float32))
    checked = _check(tmp_path, package(model_npz=model, cols_yaml=b"x: [1]"))
    assert checked.model_file == "model.npz"
    assert sorted(checked.sha256) == ["model.npz", "plan.yaml"]  # cols.yaml is ignored
    assert checked.plan.data_contract is not None and checked.min_collaborators == 1
    assert (tmp_path / "staging" / "plan.yaml").is_file()
    assert not (tmp_path / "staging" / "cols.yaml").exists()


@pytest.mark.parametrize(("runner", "where"), [
    ({"name": "mypkg.mod:Runner"}, "task_runner.name: 'mypkg.mod:Runner' is a custom object"),
    ({"name": "numpy", "params": {"model": "evil:thing"}}, "task_runner.params.model"),
    ({"name": "numpy", "allow_custom_objects": True}, "task_runner.allow_custom_objects"),
])
def test_custom_objects_are_refused(tmp_path: Path, runner: dict[str, Any], where: str) -> None:
    with pytest.raises(PlanError, match=where):
        _check(tmp_path, package(plan_doc(task_runner=runner)))
    assert not (tmp_path / "staging").exists()  # a refused package leaves nothing behind


def test_a_plan_without_a_data_contract_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="data_contract: is required by a director"):
        _check(tmp_path, package(plan_doc(data_contract=None)))


def test_oversize_and_bad_sha256_and_stray_files(tmp_path: Path) -> None:
    big = _npz(w=np.zeros(10_000, np.float32))
    with pytest.raises(ResourceLimitError, match="over the director's limit of 1000 bytes"):
        _check(tmp_path, package(model_npz=big), max_bytes=1000)
    bad = iter([incoming("plan.yaml", b"a: 1", sha="0" * 64)])
    with pytest.raises(ProtocolError, match=r"plan.yaml: sha256 mismatch"):
        _check(tmp_path, bad)
    with pytest.raises(ProtocolError, match=r"'run.sh' is not allowed"):
        _check(tmp_path, iter([incoming("run.sh", b"rm -rf /")]))


def test_validate_needs_a_model_and_npz_must_be_plain_arrays(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"a validate experiment needs a model"):
        _check(tmp_path, package(), kind=ExperimentKind.VALIDATE)
    pickled = _npz(w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ConfigError, match=r"model.npz: not a readable .npz of plain arrays"):
        _check(tmp_path, package(model_npz=pickled))


def test_a_keras_model_with_a_lambda_layer_is_refused(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    inputs = keras.Input(shape=(4,))
    hidden = keras.layers.Lambda(lambda x: x * 2)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(hidden))
    path = tmp_path / "model.keras"
    model.save(path)
    doc = plan_doc(task_runner={"name": "keras", "params": {"model": "model.keras"}})
    with pytest.raises(ConfigError, match=r"layer 'lambda.*' is a Lambda layer"):
        _check(tmp_path, package(doc, model_keras=path.read_bytes()))
