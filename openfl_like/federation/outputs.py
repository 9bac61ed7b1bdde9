"""What a federation leaves behind: models (.npz), metrics (CSV, JSON, TensorBoard), a plot.

All of it is derived from the aggregator's persisted history, so it is rewritten whole (not
appended) and needs no fsync: after a crash the resumed aggregator writes it again. TensorBoard
events are written with tensorboard's record writer and protos into a plain file: its
``EventFileWriter`` goes through ``tensorboard.compat.tf``, which imports TensorFlow when it is
installed (seconds of start-up and hundreds of MB in the aggregator). When tensorboard is not
installed only CSV/JSON are written (``tensorboard_available`` says which).
matplotlib is imported lazily with the Agg backend, only when the plot is written.

The held-out test of the final model (``write_final_test``, after the application evaluated it)
goes into the same files: a ``final_test`` entry of the last round (JSON; ``final_test/<metric>``
columns in its CSV row), ``final_test/<metric>`` scalars at step ``rounds_to_train`` (a fixed-name
event file, so a resumed run that redoes it does not duplicate them) and a marker on the plot.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openfl_like.core.fsutil import atomic_open, replace_derived
from openfl_like.core.logging import get_logger

log = get_logger(__name__)

METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
PLOT_PNG = "metrics.png"
FINAL_NPZ = "final_model.npz"
BEST_NPZ = "best_model.npz"
TASK_ORDER = ("aggregated_model_validation", "train", "locally_tuned_model_validation")
FINAL_TEST = "final_test"  # key of the last round's record, prefix of its columns and tags
# "tfevents" makes TensorBoard read it; "final" sorts it after the time-stamped round files.
FINAL_EVENTS = "events.out.tfevents.final"


def flatten_round(record: Mapping[str, Any]) -> dict[str, float | int | str]:
    """One CSV row: round, how it closed, and '<task>/<metric>' columns."""
    row: dict[str, float | int | str] = {
        "round": record["round"],
        "kind": record.get("kind", ""),
        "closed_by": record.get("closed_by", ""),
        "collaborators": len(record.get("collaborators", [])),
        "duration_seconds": round(float(record.get("duration_seconds", 0.0)), 6),
    }
    for task in TASK_ORDER:
        for metric, value in sorted(record.get("metrics", {}).get(task, {}).items()):
            row[f"{task}/{metric}"] = value
    for metric, value in sorted(record.get(FINAL_TEST, {}).items()):
        row[f"{FINAL_TEST}/{metric}"] = value
    return row


def metrics_csv(history: Sequence[Mapping[str, Any]]) -> str:
    rows = [flatten_round(r) for r in history]
    columns: list[str] = []
    for row in rows:
        columns.extend(c for c in row if c not in columns)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def metrics_json(rounds: Sequence[str]) -> str:
    """The history as a JSON list with one already-encoded round per line (still readable)."""
    return "[\n" + ",\n".join(rounds) + "\n]\n" if rounds else "[]\n"


def save_npz(path: Path, weights: Mapping[str, np.ndarray]) -> None:
    """Atomic .npz of a model (names kept; no pickle: object arrays are refused)."""
    with atomic_open(path) as handle:
        np.savez(handle, **{name: np.asarray(a) for name, a in weights.items()})


class _TensorBoard:
    def __init__(self, folder: Path, *, stream: Any = None) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        folder.mkdir(parents=True, exist_ok=True)
        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        if stream is None:
            name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
            stream = open(folder / name, "ab")  # noqa: SIM115 - closed in close()
        self._writer = RecordWriter(stream)
        self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event: Any) -> None:
        self._writer.write(event.SerializeToString())
        self._writer.flush()

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        summary = self._summary_pb2.Summary(value=[
            self._summary_pb2.Summary.Value(tag=tag, simple_value=float(v))
            for tag, v in values.items()
        ])
        self._write(self._event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def close(self) -> None:
        self._writer.close()


class OutputWriter:
    """Writes the outputs folder as rounds close and when the federation ends.

    Per-round files are written by a helper thread, off the aggregator's lock: replacing a file
    by rename makes ext4 flush it first (auto_da_alloc), ~1 ms each, which would otherwise delay
    every round's start. The helper writes the newest history it was given (older requests are
    superseded); ``flush``, ``finish`` and ``close`` wait for it, so a finished federation's
    outputs are complete when ``finish`` returns.
    """

    def __init__(self, folder: str | os.PathLike[str], *, tensorboard: bool = True,
                 plot: bool = True) -> None:
        self.folder = Path(folder)
        self.plot = plot
        self._tb: _TensorBoard | None = None
        self.tensorboard_available = False
        # Each round's JSON line, encoded once: a closed round's record never changes, so the
        # per-round rewrite costs one json.dumps, not one of the whole history.
        self._json_rounds: list[str] = []
        self._json_source: list[Mapping[str, Any]] = []  # the records those lines encode
        self._cond = threading.Condition()
        self._latest: list[Mapping[str, Any]] | None = None  # history still to write
        self._records: list[Mapping[str, Any]] = []  # rounds still to send to TensorBoard
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None
        if tensorboard:
            try:
                self._tb = _TensorBoard(self.folder / "tensorboard")
                self.tensorboard_available = True
            except ImportError:
                log.warning("tensorboard is not installed: writing metrics as CSV and JSON only")

    def round_closed(self, record: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
                     ) -> None:
        """Queue the files of a closed round (``history`` is copied; its records are not)."""
        with self._cond:
            self._latest = list(history)
            self._records.append(record)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="outputs-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every queued round is written."""
        with self._cond:
            while self._latest is not None or self._busy:
                self._cond.wait()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._latest is None and not self._closing:
                    self._cond.wait()
                if self._latest is None:
                    return
                history, records = self._latest, self._records
                self._latest, self._records, self._busy = None, [], True
            try:
                self._write_round(history, records)
            except Exception:  # derived files: a failure must not stop the federation
                log.exception("could not write the metrics outputs in %s", self.folder)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write_round(self, history: Sequence[Mapping[str, Any]],
                     records: Sequence[Mapping[str, Any]]) -> None:
        replace_derived(self.folder / METRICS_CSV, metrics_csv(history).encode())
        replace_derived(self.folder / METRICS_JSON, metrics_json(self._encoded(history)).encode())
        if self._tb is not None:
            for record in records:
                row = flatten_round(record)
                self._tb.scalars(int(record["round"]), {
                    k: float(v) for k, v in row.items()
                    if "/" in k and isinstance(v, (int, float))
                })

    def _encoded(self, history: Sequence[Mapping[str, Any]]) -> list[str]:
        keep = len(self._json_source)
        if len(history) < keep or any(
                a is not b for a, b in zip(history[:keep], self._json_source, strict=True)):
            self._json_rounds, self._json_source, keep = [], [], 0  # not an extension: redo
        # (C encoder: no indent, which would fall back to the pure-Python one.)
        self._json_rounds += [json.dumps(r) for r in history[keep:]]
        self._json_source.extend(history[keep:])
        return self._json_rounds

    def finish(self, final: Mapping[str, np.ndarray], best: Mapping[str, np.ndarray],
               history: Sequence[Mapping[str, Any]]) -> None:
        self.flush()
        save_npz(self.folder / FINAL_NPZ, final)
        save_npz(self.folder / BEST_NPZ, best)
        if self.plot and history:
            write_plot(self.folder / PLOT_PNG, history)

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()  # (it writes what is queued first)
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def final_test_scores(final: Mapping[str, Any]) -> dict[str, float]:
    """The held-out test metrics of the final metrics (``test_accuracy`` -> ``accuracy``)."""
    return {k.removeprefix("test_"): float(v) for k, v in final.items()
            if k.startswith("test_") and k != "test_samples" and isinstance(v, (int, float))
            and not isinstance(v, bool)}


def write_final_test(folder: str | os.PathLike[str], history: Sequence[Mapping[str, Any]],
                     final: Mapping[str, Any], *, step: int, tensorboard: bool = True,
                     plot: bool = True) -> bool:
    """Add the final model's held-out test metrics (``test_*`` of ``final``) to the metrics
    files, TensorBoard (at ``step``) and the plot; False when ``final`` has none."""
    scores = final_test_scores(final)
    if not scores or not history:
        return False
    out = Path(folder)
    marked = [*history[:-1], {**history[-1], FINAL_TEST: scores}]
    replace_derived(out / METRICS_CSV, metrics_csv(marked).encode())
    replace_derived(out / METRICS_JSON, metrics_json([json.dumps(r) for r in marked]).encode())
    if tensorboard:
        try:
            buffer = io.BytesIO()
            board = _TensorBoard(out / "tensorboard", stream=buffer)
            board.scalars(step, {f"{FINAL_TEST}/{k}": v for k, v in scores.items()})
            replace_derived(out / "tensorboard" / FINAL_EVENTS, buffer.getvalue())
        except ImportError:
            pass  # (OutputWriter has said that tensorboard is missing)
    if plot:
        write_plot(out / PLOT_PNG, history, final_test=scores, final_step=step)
    return True


def plot_series(history: Sequence[Mapping[str, Any]], metric: str,
                final_test: Mapping[str, float] | None = None, final_step: int = 0
                ) -> list[tuple[str, list[float], list[float]]]:
    """The lines of one panel of the plot: (label, rounds, values) per task, then the final
    test as a single point at ``final_step``."""
    series: list[tuple[str, list[float], list[float]]] = []
    for task in TASK_ORDER:
        points = [(r["round"], r["metrics"][task][metric]) for r in history
                  if metric in r.get("metrics", {}).get(task, {})]
        if points:
            series.append((task.replace("_", " "), [float(p[0]) for p in points],
                           [float(p[1]) for p in points]))
    if final_test and metric in final_test:
        series.append(("final test", [float(final_step)], [final_test[metric]]))
    return series


def write_plot(path: Path, history: Sequence[Mapping[str, Any]], *,
               final_test: Mapping[str, float] | None = None, final_step: int = 0) -> None:
    """PNG with accuracy and loss per round, one line per task, and the final model's
    held-out test as a star (with a dashed level line) when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    try:
        for axis, metric in zip(axes, ("accuracy", "loss"), strict=True):
            for label, xs, ys in plot_series(history, metric, final_test, final_step):
                if label == "final test":
                    axis.axhline(ys[0], linestyle="--", linewidth=0.8, color="black", alpha=0.5)
                    axis.plot(xs, ys, marker="*", markersize=14, linestyle="none",
                              color="black", label=f"final test {metric}: {ys[0]:.4f}")
                else:
                    axis.plot(xs, ys, marker="o", label=label)
            axis.set_xlabel("round")
            axis.set_title(metric)
            axis.grid(alpha=0.3)
            if axis.has_data():
                axis.legend(fontsize="small")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    replace_derived(path, buffer.getvalue())
