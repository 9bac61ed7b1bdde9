"""director.yaml -> a validated, frozen ``DirectorConfig``.

Example::

    director:
      name: director          # CN of the director's certificate; aggregator name of experiments
      host: 127.0.0.1         # where the director listens
      port: 50060
      public_host: ""         # what envoys dial for an experiment's aggregator (default: host)
      federation: default     # the director's id, carried in every header's federation_uuid
      workspace: workspace    # relative to this file: registry.sqlite, experiments/<name>/
      heartbeat_seconds: 5    # envoy heartbeat period; offline after missing two
      aggregator_ports: [50100, 50199]  # inclusive range for experiments' aggregators
      max_running_experiments: 2        # the rest queue in submission order
      max_package_bytes: 64MiB
      broadcast_ttl_seconds: 60
      envoys: []              # allow-list of envoy names (empty: any envoy certificate of our CA)
      experimenters: []       # allow-list of experimenter names (empty: any)
    network: {}               # the plan's network keys, for the director's own server

Errors are PlanErrors naming the file and the key, like ``plan.load``'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from openfl_like.core.errors import ConfigError, PlanError
from openfl_like.core.ids import check_name
from openfl_like.plan.load import _parse_network, _read_yaml, _Section
from openfl_like.plan.schema import Scalar

DEFAULT_PORT = 50060
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20,
          "GB": 10**9, "GiB": 2**30}


@dataclass(frozen=True)
class DirectorSettings:
    name: str = "director"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_host: str = ""  # "" = host
    federation: str = "default"
    workspace: Path = Path("workspace")  # absolute once loaded
    heartbeat_seconds: float = 5.0
    aggregator_ports: tuple[int, int] = (50100, 50199)
    max_running_experiments: int = 2
    max_package_bytes: int = 64 * 2**20
    broadcast_ttl_seconds: float = 60.0
    envoys: tuple[str, ...] = ()
    experimenters: tuple[str, ...] = ()
    # The director's held-out test set (a data description file on its host): experiments whose
    # data_contract it fits get it as aggregator.test_data, hence final test_* metrics.
    test_data: Path | None = None

    @property
    def aggregator_host(self) -> str:
        """What envoys dial for an experiment's aggregator."""
        return self.public_host or self.host


@dataclass(frozen=True)
class DirectorConfig:
    director: DirectorSettings = field(default_factory=DirectorSettings)
    network: Mapping[str, Scalar] = field(
        default_factory=lambda: MappingProxyType({"tls": True}))
    source: Path | None = None  # the file it was read from


def parse_size(value: object) -> int:
    """``64MiB``, ``1GB``, ``1024`` -> bytes; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(value)
        return value
    match = _SIZE.fullmatch(str(value))
    if not match:
        raise ValueError(value)
    return int(match.group(1)) * _UNITS[match.group(2)]


def _names(s: _Section, key: str) -> tuple[str, ...]:
    raw = s.get(key, [])
    if not isinstance(raw, list):
        raise s.error(key, f"must be a list of names (got {raw!r})")
    names: list[str] = []
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            raise s.error(f"{key}[{index}]", f"must be a name (got {item!r})")
        try:
            check_name(item)
        except ConfigError as exc:
            raise s.error(f"{key}[{index}]", exc.message) from None
        names.append(item)
    return tuple(names)


def _director(s: _Section, base: Path) -> DirectorSettings:
    d = DirectorSettings()
    name = s.string("name", d.name)
    try:
        check_name(name, "director name")
    except ConfigError as exc:
        raise s.error("name", exc.message) from None
    ports = s.get("aggregator_ports", list(d.aggregator_ports))
    if (not isinstance(ports, list) or len(ports) != 2
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in ports)
            or not 0 < ports[0] <= ports[1] <= 65535):
        raise s.error("aggregator_ports", f"must be [first, last] with 0 < first <= last <= "
                      f"65535 (got {ports!r})")
    raw_size = s.get("max_package_bytes", d.max_package_bytes)
    try:
        size = parse_size(raw_size)
    except ValueError:
        raise s.error("max_package_bytes", f"must be a size such as 64MiB (got {raw_size!r})") \
            from None
    if size <= 0:
        raise s.error("max_package_bytes", "must be > 0")
    public_host = s.get("public_host", "")
    if not isinstance(public_host, str):
        raise s.error("public_host", f"must be a string (got {public_host!r})")
    workspace = Path(s.string("workspace", str(d.workspace))).expanduser()
    test_data = None
    if s.get("test_data", None) is not None:
        test_data = Path(s.string("test_data", "")).expanduser()
        test_data = (test_data if test_data.is_absolute() else base / test_data).resolve()
        if not test_data.is_file():
            raise s.error("test_data", f"{test_data}: data description not found")
    result = DirectorSettings(
        name=name,
        host=s.string("host", d.host),
        port=s.integer("port", d.port, minimum=0, maximum=65535),
        public_host=public_host,
        federation=s.string("federation", d.federation),
        workspace=(workspace if workspace.is_absolute() else base / workspace).resolve(),
        heartbeat_seconds=s.number("heartbeat_seconds", d.heartbeat_seconds, minimum=0,
                                   exclusive_min=True),
        aggregator_ports=(ports[0], ports[1]),
        max_running_experiments=s.integer("max_running_experiments",
                                          d.max_running_experiments, minimum=1),
        max_package_bytes=size,
        broadcast_ttl_seconds=s.number("broadcast_ttl_seconds", d.broadcast_ttl_seconds,
                                       minimum=0, exclusive_min=True),
        envoys=_names(s, "envoys"),
        experimenters=_names(s, "experimenters"),
        test_data=test_data,
    )
    s.done()
    if not (result.aggregator_ports[0] <= result.port <= result.aggregator_ports[1]):
        return result
    raise s.error("port", f"{result.port} lies inside aggregator_ports "
                  f"{list(result.aggregator_ports)}")


def parse_director_config(doc: object, *, file: str, base: Path) -> DirectorConfig:
    """Validate a parsed director.yaml (``file`` names it in errors; ``base`` resolves the
    workspace)."""
    root = _Section(file, "", doc)
    director = _director(root.section("director"), base)
    network = _parse_network(root.section("network"))
    root.done()
    return DirectorConfig(director=director, network=network)


def load_director_config(path: str | Path) -> DirectorConfig:
    """Read and validate a director.yaml; PlanError naming the file and key otherwise."""
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise PlanError(f"{path}: director configuration not found")
    doc = _read_yaml(file.parent, file.name)
    config = parse_director_config(doc, file=file.name, base=file.parent)
    return DirectorConfig(director=config.director, network=config.network, source=file)
