"""A workspace's previous run: found finished, or archived for `fx aggregator start --fresh`.

A run counts as finished once its state says done and its final metrics are written (a crash
between the two is resumed by a plain start, which redoes the exports). ``--fresh`` never
deletes: ``state/``, ``outputs/`` and ``status.json`` move to ``archive/<UTC timestamp>/`` in the
same workspace (a rename, so instant and atomic per folder); logs stay where they are.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from openfl_like.app.common import Workspace
from openfl_like.federation.state import STATE_FILE

ARCHIVE_DIR = "archive"


@dataclass(frozen=True)
class FinishedRun:
    """A finished federation found in a workspace."""

    round_number: int | None
    final_metrics: dict[str, Any] = field(default_factory=dict)

    def describe(self, federation: str) -> str:
        at = "" if self.round_number is None else f" at round {self.round_number}"
        shown = [f"final {k.replace('_', ' ')} {v:.4f}" for k, v in self.final_metrics.items()
                 if k.endswith("accuracy") and isinstance(v, float)]
        result = f" ({', '.join(shown)})" if shown else ""
        return f"federation {federation} already finished{at}{result}"


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finished_run(ws: Workspace) -> FinishedRun | None:
    """The finished run in ``ws``, or None (no state, unfinished, failed or exports missing)."""
    state = _json(ws.state_dir / STATE_FILE)
    if not isinstance(state, dict) or not state.get("done") or state.get("failed"):
        return None
    final = _json(ws.final_metrics_path)
    if not isinstance(final, dict):
        return None
    number = state.get("round_number")
    return FinishedRun(number if isinstance(number, int) else None, final)


def archive_previous_run(ws: Workspace, *, now: datetime | None = None) -> Path | None:
    """Move the previous run's state, outputs and status into a new archive folder; return it
    (None when there was nothing to move)."""
    moving = [p for p in (ws.state_dir, ws.output_dir, ws.status_path) if p.exists()]
    if not moving:
        return None
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    dest = ws.root / ARCHIVE_DIR / stamp
    suffix = 1
    while dest.exists():
        suffix += 1
        dest = ws.root / ARCHIVE_DIR / f"{stamp}-{suffix}"
    dest.mkdir(parents=True)
    for path in moving:
        os.replace(path, dest / path.name)
    return dest
