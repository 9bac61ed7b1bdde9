"""An envoy's configuration file (``envoy.yaml``) -> a validated, frozen ``EnvoyConfig``.

Example::

    envoy:
      director: {host: 127.0.0.1, port: 50060, name: director, federation: default}
      workspace: workspace/{name}    # relative to this file; {name} = the envoy's name (-n)
      review_experiments: false      # true: each experiment waits for `fx envoy approve EXP`
      max_experiment_bytes: 256MiB   # refuse larger experiment packages
      description: "three digits shards, site 1"
    data: data/{name}.yaml           # this site's data description (plan/local_data.py format)
    contract: {features: [64], dtype: float32, label: classes, classes: ['0', '1']}
    network: {tls: true}             # the plan's `network` keys, for the director connection

One file may serve several envoys on a host: ``{name}`` in ``workspace``, ``data`` and
``description`` becomes the name given at start. Errors name the file and the key, like the
plan's (``envoy.yaml: envoy.director.port: must be <= 65535 (got 70000)``); unknown keys are
errors, so a typo never falls back to a default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from openfl_like.core.errors import ConfigError, PlanError
from openfl_like.core.ids import check_name
from openfl_like.plan.contract import parse_data_contract
from openfl_like.plan.load import _parse_network, _Section
from openfl_like.plan.schema import DataContract, Scalar
from openfl_like.plan.yaml_file import read_yaml

DEFAULT_MAX_EXPERIMENT_BYTES = 256 * 1024 * 1024
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4,
          "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}


@dataclass(frozen=True)
class DirectorAddress:
    """Where the envoy's director listens and who it is (its certificate CN, its federation)."""

    host: str
    port: int
    name: str = "director"
    federation: str = "default"


@dataclass(frozen=True)
class EnvoyConfig:
    """One envoy's settings, with ``{name}`` already filled in and paths made absolute."""

    name: str
    director: DirectorAddress
    workspace: Path
    data_file: Path
    contract: DataContract
    review_experiments: bool = False
    max_experiment_bytes: int = DEFAULT_MAX_EXPERIMENT_BYTES
    description: str = ""
    network: Mapping[str, Scalar] = field(default_factory=dict)
    source: Path | None = None  # the configuration file, for messages

    @property
    def experiments_dir(self) -> Path:
        return self.workspace / "experiments"

    @property
    def socket_path(self) -> Path:
        """The operator's Unix socket (approve, reject, status)."""
        return self.workspace / "envoy.sock"

    def experiment_dir(self, experiment: str) -> Path:
        return self.experiments_dir / check_name(experiment, "experiment name")


def parse_size(value: object, what: str) -> int:
    """``268435456``, ``"256MiB"``, ``"64MB"`` -> bytes."""
    if isinstance(value, bool):
        raise PlanError(f"{what}: must be a size such as 268435456 or '256MiB' (got {value!r})")
    if isinstance(value, int):
        if value <= 0:
            raise PlanError(f"{what}: must be > 0 (got {value})")
        return value
    match = _SIZE.match(str(value))
    if not match or int(match.group(1)) <= 0:
        raise PlanError(f"{what}: must be a size such as 268435456 or '256MiB' (got {value!r})")
    unit = (match.group(2) or "").lower().rstrip("b")
    return int(match.group(1)) * _UNITS[unit]


def load_envoy_config(path: str | Path, name: str) -> EnvoyConfig:
    """Read and validate ``path`` for the envoy ``name`` (``{name}`` is substituted)."""
    file = Path(path).expanduser()
    shown = str(path)
    doc = read_yaml(file, shown=shown, missing=f"{shown}: envoy configuration not found")
    return parse_envoy_config(doc, name, base_dir=file.resolve().parent, shown=shown)


def parse_envoy_config(doc: object, name: str, *, base_dir: Path,
                       shown: str = "envoy.yaml") -> EnvoyConfig:
    """Validate an already-parsed document; relative paths are resolved against ``base_dir``."""
    try:
        check_name(name, "envoy name")
    except ConfigError as exc:
        raise PlanError(f"{shown}: {exc.message}") from None
    root = _Section(shown, "", doc)
    envoy = root.section("envoy")
    director = _parse_director(envoy.section("director"))
    workspace = _path(envoy, "workspace", name, base_dir, default="workspace/{name}")
    review = envoy.boolean("review_experiments", False)
    max_bytes = parse_size(envoy.get("max_experiment_bytes", DEFAULT_MAX_EXPERIMENT_BYTES),
                           f"{shown}: {envoy.key('max_experiment_bytes')}")
    description = _fill(envoy, "description", name, default="")
    envoy.done()
    data_file = _path(root, "data", name, base_dir)
    if root.raw.get("contract") is None:
        raise root.error("contract", "is required (the plan's data_contract keys)")
    contract = parse_data_contract(root.section("contract"))
    network = _parse_network(root.section("network"))
    root.done()
    return EnvoyConfig(
        name=name, director=director, workspace=workspace, data_file=data_file,
        contract=contract, review_experiments=review, max_experiment_bytes=max_bytes,
        description=description, network=network, source=base_dir / Path(shown).name,
    )


def _parse_director(s: _Section) -> DirectorAddress:
    host = s.string("host")
    port = s.integer("port", minimum=1, maximum=65535)
    director_name = s.string("name", "director")
    federation = s.string("federation", "default")
    try:
        check_name(director_name, "director name")
    except ConfigError as exc:
        raise s.error("name", exc.message) from None
    s.done()
    return DirectorAddress(host=host, port=port, name=director_name, federation=federation)


def _fill(s: _Section, key: str, name: str, *, default: str | None = None) -> str:
    raw = s.get(key, default) if default is not None else s.get(key)
    if not isinstance(raw, str):
        raise s.error(key, f"must be a string (got {raw!r})")
    if raw == "" and default == "":
        return ""
    unknown = re.findall(r"\{(?!name\})[^}]*\}", raw)
    if unknown:
        raise s.error(key, f"only {{name}} may be substituted (got {unknown[0]})")
    return raw.replace("{name}", name)


def _path(s: _Section, key: str, name: str, base_dir: Path, *, default: str | None = None
          ) -> Path:
    text = _fill(s, key, name, default=default)
    if not text:
        raise s.error(key, "must be a non-empty path")
    path = Path(text).expanduser()
    return (path if path.is_absolute() else base_dir / path).resolve()
