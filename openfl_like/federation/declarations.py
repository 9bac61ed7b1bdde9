"""What each collaborator declared at its handshake: its sample counts by split.

They bound the weight of its results: a train result may claim at most the declared train
samples (its FedAvg weight), a validation result at most the declared validation samples, so one
site cannot outweigh the others by claiming more data than it said it has. A result of a
collaborator that declared nothing is refused: the real client always handshakes first.

Kept in ``declared.json`` in the state folder (atomic, with its SHA-256), because a collaborator
that outlives an aggregator restart does not handshake again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from pathlib import Path

from openfl_like.core.errors import FederationError, ProtocolError
from openfl_like.core.fsutil import atomic_write
from openfl_like.core.messages import ResultKey, TaskKind

FILE = "declared.json"
SPLITS = ("train", "valid")
MAX_SAMPLES = 2**53


def check_counts(collaborator: str, counts: Mapping[str, int]) -> dict[str, int]:
    unknown = sorted(set(counts) - set(SPLITS))
    if unknown:
        raise ProtocolError(f"{collaborator}: unknown sample count split(s) {unknown[:3]}; "
                            f"expected {', '.join(SPLITS)}")
    clean = {}
    for split, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or \
                not 0 <= value < MAX_SAMPLES:
            raise ProtocolError(f"{collaborator}: {split} sample count {value!r} is invalid")
        clean[split] = int(value)
    if clean.get("train", 0) <= 0:
        raise ProtocolError(f"{collaborator}: the handshake must declare its train samples (> 0)")
    return clean


class Declarations:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = self._load()

    def _load(self) -> dict[str, dict[str, int]]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise FederationError(f"{self.path}: unreadable ({exc})") from None
        body = json.dumps(raw.get("counts"), sort_keys=True, separators=(",", ":"))
        if hashlib.sha256(body.encode()).hexdigest() != raw.get("sha256"):
            raise FederationError(f"{self.path}: checksum mismatch: the declared sample counts "
                                  "were changed or damaged; refusing to resume")
        return {str(n): {str(k): int(v) for k, v in c.items()} for n, c in raw["counts"].items()}

    def declare(self, collaborator: str, counts: Mapping[str, int]) -> None:
        """Record ``collaborator``'s counts; durable before the handshake is answered."""
        clean = check_counts(collaborator, counts)
        with self._lock:
            if self._counts.get(collaborator) == clean:
                return
            updated = {**self._counts, collaborator: clean}
            body = json.dumps(updated, sort_keys=True, separators=(",", ":"))
            digest = hashlib.sha256(body.encode()).hexdigest()
            atomic_write(self.path, f'{{"counts":{body},"sha256":"{digest}"}}')
            self._counts = updated

    def check(self, key: ResultKey, data_size: int) -> None:
        """Refuse a result that claims more samples than its collaborator declared."""
        counts = self._counts.get(key.collaborator)
        if counts is None:
            raise ProtocolError(f"{key}: {key.collaborator} declared no sample counts at a "
                                "handshake; its results cannot be weighted")
        split = "train" if key.task_name == TaskKind.TRAIN.value else "valid"
        limit = counts.get(split)
        if limit is not None and data_size > limit:
            raise ProtocolError(f"{key}: data_size {data_size} exceeds the {limit} {split} "
                                f"samples {key.collaborator} declared at its handshake")

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return dict(self._counts)
