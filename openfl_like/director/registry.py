"""The director's durable memory: one SQLite file, ``<workspace>/registry.sqlite``.

Why SQLite: a director is long-running and is killed now and then; every state change must
survive ``kill -9`` whole or not at all. WAL with ``synchronous=FULL`` makes each committed
transaction durable; one connection guarded by a lock keeps it thread-safe (calls are short).

Tables: ``envoys`` (dataset, heartbeat), ``experiments`` (one row per submission, never deleted),
``events`` (per-experiment log, seq gap-free from 1), ``feedback_seq`` (the highest envoy seq
stored, so a re-sent batch is not stored twice), ``envoy_experiments`` (each chosen envoy's state
in an experiment). A newer ``schema_version`` than this code knows is refused.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openfl_like.core.errors import ConfigError, NotFoundError
from openfl_like.core.experiments import (
    EventKind,
    ExperimentEvent,
    ExperimentKind,
    ExperimentState,
    FeedbackItem,
    ShardInfo,
)

SCHEMA_VERSION = 1
REGISTRY_FILE = "registry.sqlite"

# Per-envoy states of an experiment.
ENVOY_OFFERED = "offered"
ENVOY_RUNNING = "running"
ENVOY_AWAITING = "awaiting_approval"
ENVOY_FAILED = "failed"
ENVOY_REJECTED = "rejected"
ENVOY_DONE = "done"
ENVOY_STATES = (ENVOY_OFFERED, ENVOY_RUNNING, ENVOY_AWAITING, ENVOY_FAILED, ENVOY_REJECTED,
                ENVOY_DONE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS envoys (
    name TEXT PRIMARY KEY, shard TEXT NOT NULL, registered REAL NOT NULL,
    updated REAL NOT NULL, last_heartbeat REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, owner TEXT NOT NULL,
    kind TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, started REAL NOT NULL DEFAULT 0, ended REAL NOT NULL DEFAULT 0,
    port INTEGER NOT NULL DEFAULT 0, federation_uuid TEXT NOT NULL DEFAULT '',
    envoys TEXT NOT NULL DEFAULT '[]', package_sha256 TEXT NOT NULL DEFAULT '',
    final_metrics TEXT NOT NULL DEFAULT '{}', summary TEXT NOT NULL DEFAULT '{}',
    progress TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS events (
    experiment TEXT NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL, kind TEXT NOT NULL,
    source TEXT NOT NULL, round INTEGER NOT NULL DEFAULT 0, task TEXT NOT NULL DEFAULT '',
    metrics TEXT NOT NULL DEFAULT '{}', text TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (experiment, seq));
CREATE TABLE IF NOT EXISTS feedback_seq (
    experiment TEXT NOT NULL, envoy TEXT NOT NULL, last_seq INTEGER NOT NULL,
    PRIMARY KEY (experiment, envoy));
CREATE TABLE IF NOT EXISTS envoy_experiments (
    experiment TEXT NOT NULL, envoy TEXT NOT NULL, state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', last_lines TEXT NOT NULL DEFAULT '[]',
    updated REAL NOT NULL DEFAULT 0, PRIMARY KEY (experiment, envoy));
"""

_EXPERIMENT_FIELDS = ("state", "reason", "started", "ended", "port", "federation_uuid",
                      "envoys", "package_sha256", "final_metrics", "summary", "progress")


@dataclass(frozen=True)
class EnvoyRecord:
    name: str
    shard: ShardInfo
    registered: float
    updated: float
    last_heartbeat: float


@dataclass(frozen=True)
class ExperimentRecord:
    id: int
    name: str
    owner: str
    kind: ExperimentKind
    state: ExperimentState
    reason: str
    created: float
    started: float = 0.0
    ended: float = 0.0
    port: int = 0
    federation_uuid: str = ""
    envoys: tuple[str, ...] = ()
    package_sha256: str = ""
    final_metrics: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)  # plan summary (describe)
    progress: Mapping[str, Any] = field(default_factory=dict)  # the last round's record

    @property
    def active(self) -> bool:
        return self.state in (ExperimentState.STARTING, ExperimentState.RUNNING)


@dataclass(frozen=True)
class EnvoyExperimentState:
    state: str
    reason: str = ""
    last_lines: tuple[str, ...] = ()
    updated: float = 0.0


def _shard_json(shard: ShardInfo) -> str:
    return json.dumps({"contract": dict(shard.contract),
                       "sample_counts": dict(shard.sample_counts),
                       "description": shard.description}, sort_keys=True)


def _shard(text: str) -> ShardInfo:
    data = json.loads(text)
    return ShardInfo(contract=data.get("contract") or {},
                     sample_counts=data.get("sample_counts") or {},
                     description=data.get("description", ""))


def _experiment(row: sqlite3.Row) -> ExperimentRecord:
    return ExperimentRecord(
        id=row["id"], name=row["name"], owner=row["owner"], kind=ExperimentKind(row["kind"]),
        state=ExperimentState(row["state"]), reason=row["reason"], created=row["created"],
        started=row["started"], ended=row["ended"], port=row["port"],
        federation_uuid=row["federation_uuid"], envoys=tuple(json.loads(row["envoys"])),
        package_sha256=row["package_sha256"], final_metrics=json.loads(row["final_metrics"]),
        summary=json.loads(row["summary"]), progress=json.loads(row["progress"]))


def _event(experiment: str, row: sqlite3.Row) -> ExperimentEvent:
    del experiment
    return ExperimentEvent(seq=row["seq"], time=row["time"], kind=EventKind(row["kind"]),
                           source=row["source"], round_number=row["round"], task=row["task"],
                           metrics=json.loads(row["metrics"]), text=row["text"])


class Registry:
    """Thread-safe access to the registry file (one connection, one lock)."""

    def __init__(self, workspace: str | Path) -> None:
        self.path = Path(workspace) / REGISTRY_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._check_schema()
        except BaseException:
            self._db.close()
            raise

    def _check_schema(self) -> None:
        # executescript() issues its own COMMIT, so run it outside a transaction: every
        # statement is CREATE ... IF NOT EXISTS, harmless to repeat.
        self._db.executescript(_SCHEMA)
        with self.transaction() as db:
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row["version"] > SCHEMA_VERSION:
                raise ConfigError(
                    f"{self.path}: registry schema version {row['version']} is newer than this "
                    f"director knows ({SCHEMA_VERSION}); upgrade openfl_like or use another "
                    "workspace")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) under the lock."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    # ------------------------------------------------------------------------------ envoys
    def upsert_envoy(self, name: str, shard: ShardInfo, now: float) -> bool:
        """Register or update; True when the envoy is new."""
        with self.transaction() as db:
            known = db.execute("SELECT 1 FROM envoys WHERE name = ?", (name,)).fetchone()
            if known:
                db.execute("UPDATE envoys SET shard = ?, updated = ?, last_heartbeat = ? "
                           "WHERE name = ?", (_shard_json(shard), now, now, name))
            else:
                db.execute("INSERT INTO envoys VALUES (?, ?, ?, ?, ?)",
                           (name, _shard_json(shard), now, now, now))
            return not known

    def heartbeat(self, name: str, now: float) -> bool:
        """Record a heartbeat; False when the envoy never registered."""
        with self.transaction() as db:
            cur = db.execute("UPDATE envoys SET last_heartbeat = ? WHERE name = ?", (now, name))
            return cur.rowcount > 0

    def envoys(self) -> list[EnvoyRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM envoys ORDER BY name").fetchall()
        return [EnvoyRecord(r["name"], _shard(r["shard"]), r["registered"], r["updated"],
                            r["last_heartbeat"]) for r in rows]

    # ------------------------------------------------------------------------------ experiments
    def add_experiment(self, *, name: str, owner: str, kind: ExperimentKind, created: float,
                       envoys: Sequence[str], package_sha256: str,
                       summary: Mapping[str, Any], text: str) -> ExperimentRecord:
        """A new QUEUED experiment and its first STATUS event; ConfigError if the name is
        taken (also by a removed experiment: names are never reused)."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM experiments WHERE name = ?", (name,)).fetchone():
                raise ConfigError(f"experiment {name!r} already exists on this director; "
                                  "choose another name")
            db.execute(
                "INSERT INTO experiments (name, owner, kind, state, created, envoys, "
                "package_sha256, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, owner, kind.value, ExperimentState.QUEUED.value, created,
                 json.dumps(list(envoys)), package_sha256, json.dumps(dict(summary))))
            self._append(db, name, time=created, kind=EventKind.STATUS, source="director",
                         text=text)
        return self.experiment(name)

    def experiment(self, name: str) -> ExperimentRecord:
        with self._lock:
            row = self._db.execute("SELECT * FROM experiments WHERE name = ?",
                                   (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no experiment {name!r} on this director")
        return _experiment(row)

    def experiments(self, *, owner: str | None = None,
                    states: Sequence[ExperimentState] | None = None) -> list[ExperimentRecord]:
        """In submission order."""
        query, args = "SELECT * FROM experiments", []
        where = []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if states is not None:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            args.extend(s.value for s in states)
        if where:
            query += " WHERE " + " AND ".join(where)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [_experiment(r) for r in rows]

    def update_experiment(self, name: str, *, state: ExperimentState | None = None,
                          event_time: float = 0.0, event_text: str = "",
                          **fields: Any) -> tuple[ExperimentRecord, ExperimentEvent | None]:
        """Update fields; with ``state``, append the STATUS event in the same transaction."""
        unknown = set(fields) - set(_EXPERIMENT_FIELDS)
        if unknown:
            raise ValueError(f"unknown experiment fields {sorted(unknown)}")
        values = dict(fields)
        if state is not None:
            values["state"] = state.value
        for key in ("envoys",):
            if key in values:
                values[key] = json.dumps(list(values[key]))
        for key in ("final_metrics", "summary", "progress"):
            if key in values:
                values[key] = json.dumps(dict(values[key]))
        event = None
        with self.transaction() as db:
            if values:
                sets = ", ".join(f"{k} = ?" for k in values)
                # (column names come from _EXPERIMENT_FIELDS, checked above; values are bound)
                cur = db.execute(f"UPDATE experiments SET {sets} WHERE name = ?",  # noqa: S608
                                 (*values.values(), name))
                if cur.rowcount == 0:
                    raise NotFoundError(f"no experiment {name!r} on this director")
            if state is not None:
                event = self._append(db, name, time=event_time, kind=EventKind.STATUS,
                                     source="director", text=event_text or state.value)
        return self.experiment(name), event

    # ------------------------------------------------------------------------------ events
    def _append(self, db: sqlite3.Connection, experiment: str, *, time: float, kind: EventKind,
                source: str, round_number: int = 0, task: str = "",
                metrics: Mapping[str, float] | None = None, text: str = "") -> ExperimentEvent:
        row = db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE experiment = ?",
                         (experiment,)).fetchone()
        seq = int(row[0]) + 1
        clean = {str(k): float(v) for k, v in (metrics or {}).items()}
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (experiment, seq, time, kind.value, source, round_number, task,
                    json.dumps(clean), text))
        return ExperimentEvent(seq=seq, time=time, kind=kind, source=source,
                               round_number=round_number, task=task, metrics=clean, text=text)

    def append_event(self, experiment: str, *, time: float, kind: EventKind, source: str,
                     round_number: int = 0, task: str = "",
                     metrics: Mapping[str, float] | None = None,
                     text: str = "") -> ExperimentEvent:
        with self.transaction() as db:
            return self._append(db, experiment, time=time, kind=kind, source=source,
                                round_number=round_number, task=task, metrics=metrics,
                                text=text)

    def events(self, experiment: str, from_seq: int, limit: int) -> list[ExperimentEvent]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM events WHERE experiment = ? AND seq >= ? ORDER BY seq LIMIT ?",
                (experiment, from_seq, limit)).fetchall()
        return [_event(experiment, r) for r in rows]

    def counts(self) -> tuple[dict[str, int], int]:
        """(experiments by state value, events stored): two aggregate queries, for /metrics."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM experiments GROUP BY state"
                                    ).fetchall()
            events = self._db.execute("SELECT COUNT(*) FROM events").fetchone()
        return {str(r[0]): int(r[1]) for r in rows}, int(events[0])

    def last_seq(self, experiment: str) -> int:
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE "
                                   "experiment = ?", (experiment,)).fetchone()
        return int(row[0])

    def store_feedback(self, experiment: str, envoy: str, items: Sequence[FeedbackItem],
                       *, text_limit: int) -> tuple[int, list[ExperimentEvent]]:
        """Store items with seq above the envoy's last as events; (last seq, new events)."""
        new: list[ExperimentEvent] = []
        with self.transaction() as db:
            row = db.execute("SELECT last_seq FROM feedback_seq WHERE experiment = ? AND "
                             "envoy = ?", (experiment, envoy)).fetchone()
            last = int(row["last_seq"]) if row else 0
            for item in sorted(items, key=lambda i: i.seq):
                if item.seq <= last:
                    continue
                kind = EventKind.METRICS if item.kind is EventKind.METRICS else EventKind.LOG
                new.append(self._append(
                    db, experiment, time=item.time, kind=kind, source=envoy,
                    round_number=item.round_number, task=item.task[:200],
                    metrics=dict(item.scalars) if kind is EventKind.METRICS else None,
                    text=item.text[:text_limit]))
                last = item.seq
            db.execute("INSERT OR REPLACE INTO feedback_seq VALUES (?, ?, ?)",
                       (experiment, envoy, last))
        return last, new

    # ------------------------------------------------------------------------------ per envoy
    def set_envoy_state(self, experiment: str, envoy: str, state: str, *, now: float,
                        reason: str = "", last_lines: Sequence[str] = ()) -> None:
        if state not in ENVOY_STATES:
            raise ValueError(state)
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO envoy_experiments VALUES (?, ?, ?, ?, ?, ?)",
                       (experiment, envoy, state, reason, json.dumps(list(last_lines)), now))

    def envoy_states(self, experiment: str) -> dict[str, EnvoyExperimentState]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM envoy_experiments WHERE experiment = ?",
                                    (experiment,)).fetchall()
        return {r["envoy"]: EnvoyExperimentState(r["state"], r["reason"],
                                                 tuple(json.loads(r["last_lines"])),
                                                 r["updated"]) for r in rows}

    def states_of_envoy(self, envoy: str) -> dict[str, str]:
        with self._lock:
            rows = self._db.execute("SELECT experiment, state FROM envoy_experiments WHERE "
                                    "envoy = ?", (envoy,)).fetchall()
        return {r["experiment"]: r["state"] for r in rows}
