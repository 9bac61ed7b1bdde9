"""Which files of a plan folder make up an experiment package (what an experimenter submits).

A package is data, never code: ``plan.yaml`` and, when the plan has one, its initial model as a
``.keras`` file (loaded by the director and the envoys in Keras safe mode) or NumPy weights
(``.npz``). ``cols.yaml`` and ``data.yaml`` are not sent: the director picks the envoys and every
envoy keeps its own data description.
"""

from __future__ import annotations

from pathlib import Path

from openfl_like.core.errors import PlanError
from openfl_like.plan.load import PLAN_FILE, _read_yaml

MODEL_SUFFIXES: dict[str, str] = {".keras": "model.keras", ".npz": "model.npz"}


def _plan_model(plan_dir: Path) -> Path | None:
    """The plan's ``task_runner.params.model`` as a path (relative to the plan), if any."""
    doc = _read_yaml(plan_dir, PLAN_FILE)
    if not isinstance(doc, dict):
        raise PlanError(f"{PLAN_FILE}: must be a mapping of sections")
    runner = doc.get("task_runner") or {}
    if not isinstance(runner, dict) or runner.get("name") != "keras":
        return None  # only the Keras runner reads a model file (numpy's `model` is a kind)
    params = runner.get("params")
    model = params.get("model") if isinstance(params, dict) else None
    if model is None:
        return None
    if not isinstance(model, str) or not model:
        raise PlanError(f"{PLAN_FILE}: task_runner.params.model: must be a file name")
    return (plan_dir / model).resolve()


def experiment_files(plan_dir: str | Path, model: str | Path | None = None) -> dict[str, Path]:
    """Package file name -> local path: plan.yaml and the model (``model`` overrides the plan's).

    Raises PlanError naming the file when the plan folder or the model is missing or the model is
    not a ``.keras`` or ``.npz`` file.
    """
    folder = Path(plan_dir).expanduser().resolve()
    if not (folder / PLAN_FILE).is_file():
        raise PlanError(f"{plan_dir}: no {PLAN_FILE} in this folder")
    files = {PLAN_FILE: folder / PLAN_FILE}
    chosen = Path(model).expanduser().resolve() if model is not None else _plan_model(folder)
    if chosen is None:
        return files
    name = MODEL_SUFFIXES.get(chosen.suffix.lower())
    if name is None:
        raise PlanError(f"{chosen}: an initial model must be a .keras or .npz file")
    if not chosen.is_file():
        raise PlanError(f"{chosen}: model file not found")
    files[name] = chosen
    return files
