"""Outputs: CSV/JSON rows, TensorBoard events readable by tensorboard, without TensorFlow."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from openfl_like.federation.outputs import OutputWriter, metrics_csv

HISTORY = [
    {"round": 0, "kind": "train", "closed_by": "complete", "collaborators": ["a", "b"],
     "metrics": {"train": {"loss": 1.5, "accuracy": 0.5},
                 "aggregated_model_validation": {"accuracy": 0.1}}},
    {"round": 1, "kind": "final_validation", "closed_by": "deadline", "collaborators": ["a"],
     "metrics": {"aggregated_model_validation": {"accuracy": 0.9, "loss": 0.2}}},
]


def test_metrics_csv_has_a_column_per_task_metric() -> None:
    lines = metrics_csv(HISTORY).splitlines()
    header = lines[0].split(",")
    assert header[:5] == ["round", "kind", "closed_by", "collaborators", "duration_seconds"]
    assert "aggregated_model_validation/accuracy" in header and "train/loss" in header
    assert len(lines) == 3


def test_tensorboard_events_are_readable(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    writer = OutputWriter(tmp_path, tensorboard=True, plot=False)
    for i, record in enumerate(HISTORY):
        writer.round_closed(record, HISTORY[: i + 1])
    writer.finish({"w": np.ones(2)}, {"w": np.zeros(2)}, HISTORY)
    writer.close()
    (events,) = (tmp_path / "tensorboard").iterdir()
    data, values = events.read_bytes(), []
    while data:  # TFRecord framing: length, crc(length), payload, crc(payload)
        (length,) = struct.unpack("<Q", data[:8])
        payload = data[12:12 + length]
        assert struct.unpack("<I", data[12 + length:16 + length])[0] == masked_crc32c(payload)
        event = event_pb2.Event.FromString(payload)
        values += [(event.step, v.simple_value) for v in event.summary.value
                   if v.tag == "aggregated_model_validation/accuracy"]
        data = data[16 + length:]
    assert values == [(0, pytest.approx(0.1)), (1, pytest.approx(0.9))]
    with np.load(tmp_path / "best_model.npz") as best:
        assert best["w"].tolist() == [0.0, 0.0]


def test_writing_events_does_not_import_tensorflow(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from openfl_like.federation.outputs import OutputWriter\n"
        f"w = OutputWriter({str(tmp_path)!r}, plot=False)\n"
        "w.round_closed({'round': 0, 'metrics': {'train': {'loss': 1.0}}}, [])\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_round_files_are_written_off_the_caller_and_complete_after_flush(tmp_path: Path) -> None:
    writer = OutputWriter(tmp_path, tensorboard=False, plot=False)
    try:
        for i, record in enumerate(HISTORY):
            writer.round_closed(record, HISTORY[: i + 1])
        writer.flush()
        assert json.loads((tmp_path / "metrics.json").read_text()) == HISTORY
        assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 1 + len(HISTORY)
        # A history that does not extend the previous one is written whole, not appended to.
        writer.round_closed(HISTORY[1], [HISTORY[1]])
        writer.flush()
        assert json.loads((tmp_path / "metrics.json").read_text()) == [HISTORY[1]]
    finally:
        writer.close()
