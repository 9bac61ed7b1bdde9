"""Each closed round of a federation run by `fx plan run`, once and in order (its plain
per-round lines when there is no terminal)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class RoundFeed:
    """Hands each closed round's record to ``on_round`` once, in order, from the aggregator's
    metrics.json (read only when the status says a newer round closed): polling the status
    alone would miss rounds that close within one poll."""

    def __init__(self, metrics_path: Path, on_round: Callable[[dict[str, Any]], None]) -> None:
        self.metrics_path = metrics_path
        self.on_round = on_round
        self.reported = -1  # the last round handed over

    def update(self, status: dict[str, Any] | None) -> None:
        last = ((status or {}).get("last_round") or {}).get("round")
        if isinstance(last, int) and last > self.reported:
            self.catch_up()

    def catch_up(self) -> None:
        history = _read_json(self.metrics_path)
        for record in history if isinstance(history, list) else []:
            number = record.get("round") if isinstance(record, dict) else None
            if isinstance(number, int) and number > self.reported:
                self.reported = number
                self.on_round(record)


def with_rounds(on_status: Callable[[dict[str, Any]], None] | None,
                on_round: Callable[[dict[str, Any]], None] | None,
                metrics_path: Path) -> Callable[[dict[str, Any]], None] | None:
    """``on_status`` that also feeds ``on_round`` (each status may announce a closed round)."""
    if on_round is None:
        return on_status
    feed = RoundFeed(metrics_path, on_round)

    def both(status: dict[str, Any]) -> None:
        if on_status is not None:
            on_status(status)
        feed.update(status)

    return both

