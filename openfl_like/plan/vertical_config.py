"""A vertical plan (``plans/vertical_digits/plan.yaml``) -> a validated, frozen ``VerticalPlan``.

Two parties train one model split between them (``openfl_like.vertical``): the *leader* holds
the labels and the top model, the *follower* a bottom model over its own features. Both read the
same plan; each uses its own section (``leader`` or ``follower``) and the shared ones::

    session_id: digits-v1                # both sides must agree (checked at connection)
    workspace: workspace                 # relative to this file; each party uses <workspace>/<name>
    leader:   {name: shop, address: 127.0.0.1:50071}    # listen: default 0.0.0.0:<port>
    follower: {name: bank, address: 127.0.0.1:50072}
    data: {source: digits, seed: 0, test_fraction: 0.2}
    model: {embedding_dim: 16, hidden_units: 64, learning_rate: 0.01, batch_size: 32, ...}
    checkpoint: {every_steps: 20, keep: 3}
    timeouts: {default_ms: 60000, connect_ms: 120000, scan_interval_ms: 100}

Errors name the file and the key (``plan.yaml: model.batch_size: must be >= 1 (got 0)``);
unknown keys are errors, so a typo never falls back to a default. The keys are documented in
``docs/vertical.md`` (a test checks every key is).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from openfl_like.core.errors import ConfigError
from openfl_like.core.ids import check_name
from openfl_like.core.vertical import PartyRole
from openfl_like.plan.load import _Section
from openfl_like.plan.yaml_file import read_yaml

PLAN_FILE = "plan.yaml"
DATA_SOURCES = ("digits", "npz")
OPTIMIZERS = ("adam", "sgd")
_LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class PartySettings:
    """Who a party is (its certificate CN) and where it is reached / listens."""

    name: str
    address: str  # host:port the other party dials
    listen: str  # host:port this party's server binds


@dataclass(frozen=True)
class PartyFiles:
    """One party's own data files (``data.source: npz``): ``ids``, ``x`` (+ ``y`` at the
    leader) in each, no pickle."""

    train: Path
    test: Path


@dataclass(frozen=True)
class VerticalDataSettings:
    """Where the samples come from. ``digits``: scikit-learn's 8x8 digits split by pixel
    columns (follower: the left 4 columns, leader: the right 4 and the labels)."""

    source: str = "digits"
    seed: int = 0
    test_fraction: float = 0.2
    leader: PartyFiles | None = None
    follower: PartyFiles | None = None


@dataclass(frozen=True)
class SplitModelSettings:
    """The split model and how it trains; every number must be the same at both parties
    (a digest of them is compared at start)."""

    embedding_dim: int = 16
    hidden_units: int = 64
    num_classes: int = 10
    optimizer: str = "adam"
    learning_rate: float = 0.01
    batch_size: int = 32
    epochs: int = 5
    seed: int = 0


@dataclass(frozen=True)
class CheckpointSettings:
    every_steps: int = 20
    keep: int = 3


@dataclass(frozen=True)
class TimeoutSettings:
    default_ms: int = 60_000
    connect_ms: int = 120_000
    scan_interval_ms: int = 100


@dataclass(frozen=True)
class VerticalPlan:
    """A whole vertical plan; ``party(role)`` / ``peer(role)`` pick a side's settings."""

    plan_file: Path
    session_id: str
    workspace: Path
    leader: PartySettings
    follower: PartySettings
    data: VerticalDataSettings = field(default_factory=VerticalDataSettings)
    model: SplitModelSettings = field(default_factory=SplitModelSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)

    def party(self, role: PartyRole) -> PartySettings:
        return self.leader if role is PartyRole.LEADER else self.follower

    def peer(self, role: PartyRole) -> PartySettings:
        return self.party(role.peer)

    def party_workspace(self, role: PartyRole) -> Path:
        return self.workspace / self.party(role).name


def load_vertical_plan(path: str | Path) -> VerticalPlan:
    """Read ``path`` (a plan.yaml, or a folder holding one) and validate it."""
    given = Path(path).expanduser()
    file = given / PLAN_FILE if given.is_dir() else given
    shown = str(file)
    doc = read_yaml(file, shown=shown, missing=f"{shown}: vertical plan not found")
    return parse_vertical_plan(doc, plan_file=file.resolve(), shown=shown)


def parse_vertical_plan(doc: object, *, plan_file: Path, shown: str = PLAN_FILE
                        ) -> VerticalPlan:
    """Validate an already-parsed document; relative paths are resolved against the folder of
    ``plan_file``."""
    base = plan_file.parent
    root = _Section(shown, "", doc)
    session_id = root.string("session_id")
    if len(session_id) > 128 or not session_id.isprintable():
        raise root.error("session_id", "must be printable and at most 128 characters")
    workspace = base / Path(root.string("workspace", "workspace")).expanduser()
    leader = _parse_party(root.section("leader"))
    follower = _parse_party(root.section("follower"))
    if leader.name == follower.name:
        raise root.error("follower.name", f"must differ from leader.name (both {leader.name!r})")
    data = _parse_data(root.section("data"), base)
    model = _parse_model(root.section("model"))
    checkpoint = _parse_checkpoint(root.section("checkpoint"))
    timeouts = _parse_timeouts(root.section("timeouts"))
    root.done()
    return VerticalPlan(plan_file=plan_file, session_id=session_id, workspace=workspace,
                        leader=leader, follower=follower, data=data, model=model,
                        checkpoint=checkpoint, timeouts=timeouts)


def split_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) -> (host, port); ConfigError when malformed."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"must be host:port with a port in 1..65535 (got {value!r})")
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_party(s: _Section) -> PartySettings:
    name = s.string("name")
    try:
        check_name(name, "party name")
    except ConfigError as exc:
        raise s.error("name", exc.message) from None
    address = s.string("address")
    try:
        host, port = split_address(address)
    except ConfigError as exc:
        raise s.error("address", exc.message) from None
    # A loopback address is a single-host set-up: listening on every interface would only
    # expose the port for nothing. Elsewhere the address may be a NAT's, so bind them all.
    default_listen = f"{'127.0.0.1' if _is_loopback(host) else '0.0.0.0'}:{port}"  # noqa: S104
    listen = s.string("listen", default_listen)
    try:
        split_address(listen)
    except ConfigError as exc:
        raise s.error("listen", exc.message) from None
    s.done()
    return PartySettings(name=name, address=address, listen=listen)


def _parse_files(s: _Section, base: Path) -> PartyFiles:
    files = PartyFiles(train=base / Path(s.string("train")).expanduser(),
                       test=base / Path(s.string("test")).expanduser())
    s.done()
    return files


def _parse_data(s: _Section, base: Path) -> VerticalDataSettings:
    d = VerticalDataSettings()
    source = s.string("source", d.source, choices=DATA_SOURCES)
    seed = s.integer("seed", d.seed, minimum=0)
    test_fraction = s.number("test_fraction", d.test_fraction, minimum=0, maximum=1,
                             exclusive_min=True, exclusive_max=True)
    leader = follower = None
    if source == "npz":
        leader = _parse_files(s.section("leader"), base)
        follower = _parse_files(s.section("follower"), base)
        if "test_fraction" in s.raw or "seed" in s.raw:
            key = "test_fraction" if "test_fraction" in s.raw else "seed"
            raise s.error(key, "applies to source 'digits' only (npz files bring their own "
                          "test set)")
    else:
        for key in ("leader", "follower"):
            if key in s.raw:
                raise s.error(key, "applies to source 'npz' only")
    s.done()
    return VerticalDataSettings(source=source, seed=seed, test_fraction=test_fraction,
                                leader=leader, follower=follower)


def _parse_model(s: _Section) -> SplitModelSettings:
    d = SplitModelSettings()
    result = SplitModelSettings(
        embedding_dim=s.integer("embedding_dim", d.embedding_dim, minimum=1, maximum=4096),
        hidden_units=s.integer("hidden_units", d.hidden_units, minimum=1, maximum=65536),
        num_classes=s.integer("num_classes", d.num_classes, minimum=2, maximum=100_000),
        optimizer=s.string("optimizer", d.optimizer, choices=OPTIMIZERS),
        learning_rate=s.number("learning_rate", d.learning_rate, minimum=0, exclusive_min=True),
        batch_size=s.integer("batch_size", d.batch_size, minimum=1, maximum=1 << 20),
        epochs=s.integer("epochs", d.epochs, minimum=1, maximum=1_000_000),
        seed=s.integer("seed", d.seed, minimum=0, maximum=2**31 - 1),
    )
    s.done()
    return result


def _parse_checkpoint(s: _Section) -> CheckpointSettings:
    d = CheckpointSettings()
    result = CheckpointSettings(
        every_steps=s.integer("every_steps", d.every_steps, minimum=1),
        # Two at least: the parties save the same step moments apart, so after a crash one may
        # hold a step the other does not; the one before is then the newest common one.
        keep=s.integer("keep", d.keep, minimum=2, maximum=1000),
    )
    s.done()
    return result


def _parse_timeouts(s: _Section) -> TimeoutSettings:
    d = TimeoutSettings()
    result = TimeoutSettings(
        default_ms=s.integer("default_ms", d.default_ms, minimum=1),
        connect_ms=s.integer("connect_ms", d.connect_ms, minimum=1),
        scan_interval_ms=s.integer("scan_interval_ms", d.scan_interval_ms, minimum=1),
    )
    if result.scan_interval_ms > result.default_ms:
        raise s.error("scan_interval_ms", f"must be <= default_ms ({result.default_ms})")
    s.done()
    return result
