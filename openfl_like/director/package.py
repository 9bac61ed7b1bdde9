"""Check a submitted experiment package while it streams in.

A package is ``plan.yaml`` plus at most one initial model (``model.keras`` or ``model.npz``).
``cols.yaml`` and ``data.yaml`` are accepted and ignored (the director writes its own from the
matching envoys): an experimenter may simply send a plan folder. Anything else is refused.

Why so strict: the package runs on the director's host (the aggregator) and at every envoy, so
it may name no custom object (``module:attr``) whatever the plan says, a ``.keras`` model must
pass Keras safe-mode checks (no Lambda layer), and an ``.npz`` must hold plain arrays only.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.errors import ConfigError, PlanError, ProtocolError, ResourceLimitError
from openfl_like.core.experiments import ExperimentKind, IncomingFile
from openfl_like.plan.load import COLS_FILE, DATA_FILE, PLAN_FILE, _read_yaml, parse_plan
from openfl_like.plan.registry import is_object_reference
from openfl_like.plan.schema import Plan

KERAS_MODEL = "model.keras"
NPZ_MODEL = "model.npz"
MODEL_FILES = (KERAS_MODEL, NPZ_MODEL)
ALLOWED_FILES = (PLAN_FILE, *MODEL_FILES)
IGNORED_FILES = (COLS_FILE, DATA_FILE)
_PLACEHOLDER = "envoy"  # collaborator names of the placeholder cols.yaml used for checking


@dataclass(frozen=True)
class CheckedPackage:
    """A package that passed every check, staged in ``folder``."""

    folder: Path
    plan_doc: Mapping[str, Any]  # plan.yaml as submitted (the director rewrites a copy)
    plan: Plan  # parsed against placeholder cols/data: for its settings and contract
    model_file: str  # "" or one of MODEL_FILES
    sha256: Mapping[str, str] = field(default_factory=dict)  # kept file -> sha256
    min_collaborators: int = 0  # as the plan says it (0: a majority of the chosen envoys)
    stragglers_enabled: bool = True

    @property
    def package_sha256(self) -> str:
        """One digest of the whole package (sorted names and their sha256)."""
        text = "\n".join(f"{n}:{h}" for n, h in sorted(self.sha256.items()))
        return hashlib.sha256(text.encode()).hexdigest()


def _receive(item: IncomingFile, dest: Path | None, budget: int, max_bytes: int) -> int:
    """Stream one file to ``dest`` (or nowhere), checking size and sha256; bytes received."""
    digest = hashlib.sha256()
    received = 0
    handle = dest.open("wb") if dest is not None else None
    try:
        for chunk in item.chunks:
            received += len(chunk)
            if received > budget:
                raise ResourceLimitError(
                    f"package: over the director's limit of {max_bytes} bytes (at {item.path})")
            if received > item.size:
                raise ProtocolError(f"package: {item.path}: more bytes than its declared size "
                                    f"{item.size}")
            digest.update(chunk)
            if handle is not None:
                handle.write(chunk)
    finally:
        if handle is not None:
            handle.close()
    if received != item.size:
        raise ProtocolError(f"package: {item.path}: {received} bytes received, {item.size} "
                            "declared")
    if digest.hexdigest() != item.sha256.lower():
        raise ProtocolError(f"package: {item.path}: sha256 mismatch (received "
                            f"{digest.hexdigest()}, declared {item.sha256})")
    return received


def receive_package(files: Iterator[IncomingFile], staging: Path, *, max_bytes: int
                    ) -> dict[str, str]:
    """Write the package's allowed files to ``staging``; returns name -> sha256."""
    staging.mkdir(parents=True, exist_ok=True)
    total = 0
    kept: dict[str, str] = {}
    seen: set[str] = set()
    for item in files:
        if item.path in seen:
            raise ProtocolError(f"package: {item.path}: sent twice")
        seen.add(item.path)
        if item.path not in ALLOWED_FILES and item.path not in IGNORED_FILES:
            raise ProtocolError(f"package: {item.path!r} is not allowed (a package holds "
                                f"{', '.join(ALLOWED_FILES)}; {', '.join(IGNORED_FILES)} are "
                                "ignored)")
        if item.size < 0 or total + item.size > max_bytes:
            raise ResourceLimitError(f"package: over the director's limit of {max_bytes} bytes "
                                     f"(at {item.path}, {item.size} bytes)")
        dest = staging / item.path if item.path in ALLOWED_FILES else None
        total += _receive(item, dest, max_bytes - total, max_bytes)
        if dest is not None:
            kept[item.path] = item.sha256.lower()
    if PLAN_FILE not in kept:
        raise ProtocolError(f"package: no {PLAN_FILE}")
    if all(m in kept for m in MODEL_FILES):
        raise ProtocolError(f"package: send one model ({' or '.join(MODEL_FILES)}), not both")
    return kept


def _refuse_custom_objects(doc: Mapping[str, Any]) -> None:
    runner = doc.get("task_runner") or {}
    if not isinstance(runner, dict):
        return  # parse_plan names the problem
    if runner.get("allow_custom_objects") is True:
        raise PlanError(f"{PLAN_FILE}: task_runner.allow_custom_objects: a director runs no "
                        "custom objects; remove it (use built-in runners and layers)")
    if is_object_reference(runner.get("name")):
        raise PlanError(f"{PLAN_FILE}: task_runner.name: {runner['name']!r} is a custom object, "
                        "which a director never runs")
    params = runner.get("params") or {}
    if isinstance(params, dict):
        for key, value in params.items():
            if is_object_reference(value):
                raise PlanError(f"{PLAN_FILE}: task_runner.params.{key}: {value!r} is a custom "
                                "object, which a director never runs")
    data = doc.get("data") or {}
    if isinstance(data, dict) and is_object_reference(data.get("loader")):
        raise PlanError(f"{PLAN_FILE}: data.loader: {data['loader']!r} is a custom object, "
                        "which a director never runs")


def _raw_stragglers(doc: Mapping[str, Any]) -> tuple[int, bool]:
    section = doc.get("stragglers") or {}
    if not isinstance(section, dict):
        return 0, True
    value = section.get("min_collaborators", 0)
    enabled = section.get("enabled", True)
    number = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return max(0, number), enabled is not False


def check_npz(path: Path) -> None:
    """Plain numeric arrays only, read without pickle."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not archive.files:
                raise ConfigError(f"{NPZ_MODEL}: holds no arrays")
            for key in archive.files:
                array = archive[key]
                if array.dtype.kind not in "biuf":
                    raise ConfigError(f"{NPZ_MODEL}: {key}: dtype {array.dtype} is not numeric")
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ConfigError(f"{NPZ_MODEL}: not a readable .npz of plain arrays ({exc})") from None


def check_keras(path: Path) -> None:
    """Keras safe-mode check of the architecture (no Lambda, no custom object), imported only
    when a Keras package arrives."""
    from openfl_like.runners.keras_settings import check_keras_file

    try:
        check_keras_file(path)
    except ConfigError as exc:
        raise ConfigError(exc.message.replace(str(path), KERAS_MODEL)) from None


def check_package(staging: Path, kept: Mapping[str, str], kind: ExperimentKind) -> CheckedPackage:
    """Parse and check a received package (see the module docstring for what is refused)."""
    doc = _read_yaml(staging, PLAN_FILE)
    if not isinstance(doc, dict):
        raise PlanError(f"{PLAN_FILE}: must be a mapping")
    _refuse_custom_objects(doc)
    min_cols, enabled = _raw_stragglers(doc)
    placeholders = [f"{_PLACEHOLDER}{i}" for i in range(max(1, min_cols))]
    plan = parse_plan(doc, {"collaborators": placeholders},
                      {name: "local" for name in placeholders}, plan_dir=staging)
    if plan.data_contract is None:
        raise PlanError(f"{PLAN_FILE}: data_contract: is required by a director (envoys are "
                        "matched to the plan by their data contract)")
    if plan.aggregator.test_data:
        raise PlanError(f"{PLAN_FILE}: aggregator.test_data: not available on a director "
                        "(the final metrics are the envoys' validation); remove it")
    model = next((m for m in MODEL_FILES if m in kept), "")
    if kind is ExperimentKind.VALIDATE and not model:
        raise PlanError("package: a validate experiment needs a model "
                        f"({' or '.join(MODEL_FILES)})")
    if model == KERAS_MODEL:
        if plan.task_runner.name != "keras":
            raise PlanError(f"{PLAN_FILE}: task_runner.name: {KERAS_MODEL} needs the keras "
                            f"runner (got {plan.task_runner.name!r})")
        check_keras(staging / KERAS_MODEL)
    elif model == NPZ_MODEL:
        check_npz(staging / NPZ_MODEL)
    model_param = plan.task_runner.params.get("model")
    if isinstance(model_param, str) and model_param.endswith(".keras") and model != KERAS_MODEL:
        raise PlanError(f"{PLAN_FILE}: task_runner.params.model: {model_param!r} names a model "
                        f"file; send it as {KERAS_MODEL}")
    return CheckedPackage(folder=staging, plan_doc=doc, plan=plan, model_file=model,
                          sha256=dict(kept), min_collaborators=min_cols,
                          stragglers_enabled=enabled)


def receive_and_check(files: Iterator[IncomingFile], staging: Path, *, kind: ExperimentKind,
                      max_bytes: int) -> CheckedPackage:
    """Receive into ``staging`` and check; the folder is removed when anything is refused."""
    try:
        kept = receive_package(files, staging, max_bytes=max_bytes)
        return check_package(staging, kept, kind)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
