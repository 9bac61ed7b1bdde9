"""The aggregator's persisted state: a snapshot per round plus a journal of accepted results.

Layout of the state folder::

    state.json                snapshot: round, model file, optimizer file, best model, history
    journal-<round>.jsonl     results accepted in the open round, one checksummed line each
    models/model-r<N>.bin     global model of round N (tensorfile + .json manifest)
    models/opt-r<N>.bin       server-optimizer state that goes with it (FedOpt)
    staging/<key>-<id>.bin    updates received, validated, waiting for the round to close
                              (and, for derived models, kept while that model is); no manifest
                              file: their layout is in the journal line (and DerivedPart)

Why a journal and not a full snapshot per result: rewriting a snapshot that lists every result
of the round costs O(n) per result, O(n^2) per round at 1000 collaborators. An appended line that
is fsynced is just as atomic: ``load`` cuts a torn last line and refuses a damaged line that
good lines follow (that is corruption, not a crash). Concurrent appends share one fsync
(``Journal``: group commit). A result is *applied* exactly when its line is in the journal: a
crash before leaves it unapplied (the collaborator's retry stages it again), a crash after
leaves it applied (the retry is answered as a duplicate). The snapshot itself is replaced
atomically (core.fsutil) at round close, after the new model file is on disk.

Derived models: when the aggregate is a pure function of the round's updates (synchronous FedAvg,
median, trimmed mean: no server optimizer, no base model), the snapshot names the staged update
files it was computed from (``derived_models``) instead of a model file. Those files are already
durable, and aggregation sums them in a fixed order, so recomputing gives the same bits; writing
and fsyncing a second copy of the model every round (~0.5 s per 256 MiB here) is saved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from openfl_like.core.errors import FederationError
from openfl_like.core.fsutil import atomic_write
from openfl_like.core.logging import get_logger
from openfl_like.core.messages import ResultKey
from openfl_like.federation.journal import (  # (ResultRecord, disk_error: re-exported)
    Journal,
    ResultRecord,
    disk_error,
    parse_line,
)
from openfl_like.federation.tensorfile import (
    MANIFEST_SUFFIX,
    Layout,
    TensorEntry,
    entries_of,
    remove_tensor_file,
)

log = get_logger(__name__)

STATE_FILE = "state.json"
FORMAT_VERSION = 2  # 2: the snapshot carries its SHA-256
_JOURNAL = re.compile(r"^journal-(\d+)\.jsonl$")


@dataclass(frozen=True)
class DerivedPart:
    """One staged update a derived model is computed from, with its weight and sort keys."""

    staged: str
    collaborator: str
    weight: float
    tie_break: str
    layout: Layout | None = None  # the staged file's manifest (see ResultRecord.layout)

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        if self.layout is None:
            del raw["layout"]
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> DerivedPart:
        return cls(str(raw["staged"]), str(raw["collaborator"]), float(raw["weight"]),
                   str(raw["tie_break"]), raw.get("layout"))

    def staged_entries(self) -> dict[str, TensorEntry] | None:
        return None if self.layout is None else entries_of(self.layout)


@dataclass
class AggregatorState:
    plan_digest: str
    federation_uuid: str
    round_number: int = 0
    model_files: dict[int, str] = field(default_factory=dict)  # round -> model file name
    derived_models: dict[int, list[DerivedPart]] = field(default_factory=dict)  # round -> parts
    optimizer_file: str = ""
    best_round: int | None = None
    best_metric: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    recent_keys: dict[str, int] = field(default_factory=dict)  # key -> round it was applied in
    done: bool = False
    failed: str = ""
    results: list[ResultRecord] = field(default_factory=list)  # open round; journal, not snapshot

    def has_model(self, round_number: int) -> bool:
        return round_number in self.model_files or round_number in self.derived_models

    def keep_models(self, rounds: set[int]) -> None:
        """Forget the models of every round not in ``rounds``."""
        self.model_files = {k: v for k, v in self.model_files.items() if k in rounds}
        self.derived_models = {k: v for k, v in self.derived_models.items() if k in rounds}

    def staged_in_use(self) -> set[str]:
        """Staged files the open round's journal or a derived model refers to."""
        names = {r.staged for r in self.results if r.staged}
        names.update(p.staged for parts in self.derived_models.values() for p in parts)
        return names

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "plan_digest": self.plan_digest,
            "federation_uuid": self.federation_uuid,
            "round_number": self.round_number,
            "model_files": {str(k): v for k, v in self.model_files.items()},
            "derived_models": {str(k): [p.to_json() for p in v]
                               for k, v in self.derived_models.items()},
            "optimizer_file": self.optimizer_file,
            "best_round": self.best_round,
            "best_metric": self.best_metric,
            "history": self.history,
            "recent_keys": self.recent_keys,
            "done": self.done,
            "failed": self.failed,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> AggregatorState:
        if raw.get("format") not in (1, FORMAT_VERSION):
            raise FederationError(f"{STATE_FILE}: unsupported format {raw.get('format')!r}")
        return cls(
            plan_digest=raw["plan_digest"],
            federation_uuid=raw["federation_uuid"],
            round_number=int(raw["round_number"]),
            model_files={int(k): v for k, v in raw["model_files"].items()},
            derived_models={int(k): [DerivedPart.from_json(p) for p in v]
                            for k, v in raw.get("derived_models", {}).items()},
            optimizer_file=raw.get("optimizer_file", ""),
            best_round=raw.get("best_round"),
            best_metric=raw.get("best_metric"),
            history=list(raw.get("history", [])),
            recent_keys={str(k): int(v) for k, v in raw.get("recent_keys", {}).items()},
            done=bool(raw.get("done", False)),
            failed=str(raw.get("failed", "")),
        )


_SUM = re.compile(r',"sha256":"([0-9a-f]{64})"\}\s*$')


class StateStore:
    """Reads and writes one aggregator state folder."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.root = Path(state_dir)
        self.models = self.root / "models"
        self.staging = self.root / "staging"
        self._history_cache: list[tuple[Any, str]] = []  # (history record, its JSON)
        self._journal: Journal | None = None

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def exists(self) -> bool:
        return self.state_path.exists()

    def journal_path(self, round_number: int) -> Path:
        return self.root / f"journal-{round_number}.jsonl"

    def model_path(self, name: str) -> Path:
        return self.models / name

    def staging_path(self, key: ResultKey) -> Path:
        self.staging.mkdir(parents=True, exist_ok=True)
        stem = f"{key.collaborator}-r{key.round_number}-{key.task_name}-{uuid.uuid4().hex[:12]}"
        return self.staging / f"{stem}.bin"

    def load(self) -> AggregatorState:
        """The snapshot and the open round's journal; a damaged file is an error naming it."""
        try:
            text = self.state_path.read_text()
        except (OSError, ValueError) as exc:
            raise FederationError(f"{self.state_path}: unreadable state ({exc})") from None
        match = _SUM.search(text)
        if match is not None:
            body = text[:match.start()] + "}"
            if hashlib.sha256(body.encode()).hexdigest() != match.group(1):
                raise FederationError(
                    f"{self.state_path}: checksum mismatch: the saved state was changed or "
                    "damaged; refusing to resume from it"
                )
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise FederationError(f"{self.state_path}: unreadable state ({exc})") from None
        if match is None:
            if raw.get("format") != 1:
                raise FederationError(f"{self.state_path}: no checksum; refusing to resume")
            log.warning("%s: written before snapshots had checksums; trusting it once",
                        self.state_path)
        raw.pop("sha256", None)
        state = AggregatorState.from_json(raw)
        state.results = self._read_journal(state.round_number)
        return state

    def _read_journal(self, round_number: int) -> list[ResultRecord]:
        """The journal's records. A damaged last line is a torn write (cut off, with a warning);
        a damaged line with good lines after it is corruption, never silently dropped."""
        path = self.journal_path(round_number)
        if not path.exists():
            return []
        records: list[ResultRecord] = []
        good = 0
        data = path.read_bytes()
        lines = data.splitlines(keepends=True)
        for number, raw_line in enumerate(lines, start=1):
            try:
                records.append(parse_line(raw_line))
            except (ValueError, KeyError, TypeError):
                if number < len(lines):
                    raise FederationError(
                        f"{path}: line {number} is damaged (checksum mismatch) and "
                        f"{len(lines) - number} line(s) follow it; refusing to resume "
                        "without the results it acknowledged"
                    ) from None
                log.warning("%s: dropping a torn last line after %d results", path, len(records))
                break
            good += len(raw_line)
        if good != len(data):
            with open(path, "r+b") as handle:
                handle.truncate(good)
                os.fsync(handle.fileno())
        return records

    def append(self, round_number: int, record: ResultRecord, *, durable: bool = True
               ) -> tuple[Journal, int]:
        """Add one result to the open round's journal. It counts as applied once durable:
        with ``durable`` on return, else after ``sync(ticket)``, which callers run outside
        their lock so that concurrent results share one fsync."""
        path = self.journal_path(round_number)
        journal = self._journal
        if journal is None or journal.path != path:
            self.root.mkdir(parents=True, exist_ok=True)
            if journal is not None:
                journal.close()
            journal = self._journal = Journal(path)
        ticket = (journal, journal.append(record))
        if durable:
            self.sync(ticket)
        return ticket

    @staticmethod
    def sync(ticket: tuple[Journal, int]) -> None:
        journal, line = ticket
        journal.sync(line)

    def save(self, state: AggregatorState) -> None:
        """Replace the snapshot atomically, then drop journals of other rounds."""
        try:
            atomic_write(self.state_path, self._encode(state))
        except OSError as exc:
            raise disk_error(self.state_path, exc) from None
        if self._journal is not None and \
                self._journal.path != self.journal_path(state.round_number):
            self._journal.close()
            self._journal = None
        for path in self.root.glob("journal-*.jsonl"):
            match = _JOURNAL.match(path.name)
            if match and int(match.group(1)) != state.round_number:
                path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _encode(self, state: AggregatorState) -> str:
        """The snapshot's JSON with its SHA-256 as the last key; each history record encoded
        once (it never changes once closed).

        This runs at every round close, so its cost must not grow with the history: records
        seen before are reused from a cache held by identity. Compact on purpose: ``indent``
        makes json fall back from its C encoder to the pure-Python one (~5-7x slower).
        """
        raw = state.to_json()
        history: list[Any] = raw.pop("history")
        cached = self._history_cache
        if len(history) < len(cached) or any(
                a is not b for a, b in zip(history, (rec for rec, _ in cached), strict=False)):
            cached.clear()
        cached.extend((rec, json.dumps(rec, sort_keys=True, separators=(",", ":")))
                      for rec in history[len(cached):])
        rest = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        body = '{"history":[' + ",".join(text for _, text in cached) + "]," + rest[1:]
        digest = hashlib.sha256(body.encode()).hexdigest()
        return f'{body[:-1]},"sha256":"{digest}"}}'

    def collect_garbage(self, state: AggregatorState, *, staging: bool) -> None:
        for path in self.garbage(state, staging=staging):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def garbage(self, state: AggregatorState, *, staging: bool) -> list[Path]:
        """Model (and, when ``staging``, staged) files that ``state`` does not refer to.

        Staging is only swept at start-up: while serving, uploads in flight own files that no
        journal line names yet.
        """
        keep_models = set(state.model_files.values())
        if state.optimizer_file:
            keep_models.add(state.optimizer_file)
        keep_staged = state.staged_in_use()
        sweep = [(self.models, keep_models)] + ([(self.staging, keep_staged)] if staging else [])
        found: list[Path] = []
        for folder, keep in sweep:
            if folder.is_dir():
                found.extend(p for p in folder.iterdir()
                             if p.name.removesuffix(MANIFEST_SUFFIX) not in keep)
        return found

    def staged_paths(self, name: str) -> list[Path]:
        path = self.staging / name
        return [path.with_name(path.name + MANIFEST_SUFFIX), path]

    def remove_staged(self, name: str) -> None:
        remove_tensor_file(self.staging / name)
