"""The aggregator's final held-out test shows in metrics.csv/json, TensorBoard and the plot."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest

from openfl_like.federation.outputs import FINAL_EVENTS
from tests.unit.app.test_final_evaluation import _running, make_plan


def _scalars(path: Path) -> list[tuple[int, str, float]]:
    from tensorboard.compat.proto import event_pb2

    data, found = path.read_bytes(), []
    while data:  # TFRecord framing: length, crc(length), payload, crc(payload)
        (length,) = struct.unpack("<Q", data[:8])
        event = event_pb2.Event.FromString(data[12:12 + length])
        found += [(event.step, v.tag, v.simple_value) for v in event.summary.value]
        data = data[16 + length:]
    return found


def test_finish_writes_the_final_test_into_every_output(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("matplotlib")
    # Prepare: a finished plan (2 rounds) with aggregator test data.
    running = _running(make_plan(tmp_path, test_data="test/test.yaml"), tmp_path)
    out = running.workspace.output_dir
    # Execute
    metrics = running.finish()
    # Assert: the last round's CSV row and JSON record carry the final test...
    accuracy, loss = metrics["test_accuracy"], metrics["test_loss"]
    rows = list(csv.DictReader((out / "metrics.csv").read_text().splitlines()))
    assert float(rows[-1]["final_test/accuracy"]) == pytest.approx(accuracy)
    assert all(not r["final_test/accuracy"] for r in rows[:-1])
    history = json.loads((out / "metrics.json").read_text())
    assert history[-1]["final_test"] == {"accuracy": pytest.approx(accuracy),
                                         "loss": pytest.approx(loss)}
    assert len(history) == 3 and "final_test" not in history[0]
    # ...TensorBoard has scalars at the final step (rounds_to_train)...
    scalars = _scalars(out / "tensorboard" / FINAL_EVENTS)
    assert (2, "final_test/accuracy", pytest.approx(accuracy)) in scalars
    # ...and the plot was drawn (with the marker: see test_outputs_final_test).
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second finish (a resumed, ended run redoes it) rewrites rather than duplicates.
    running.finish()
    assert len(_scalars(out / "tensorboard" / FINAL_EVENTS)) == 2
    assert len(json.loads((out / "metrics.json").read_text())) == 3


def test_no_test_data_leaves_the_round_files_alone(tmp_path: Path) -> None:
    running = _running(make_plan(tmp_path, contract=True), tmp_path)
    metrics = running.finish()
    assert not any(k.startswith("test_") for k in metrics)
    assert not (running.workspace.output_dir / "metrics.json").exists()
