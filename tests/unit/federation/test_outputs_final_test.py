"""write_final_test and the plot's final-test marker, on a made-up history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openfl_like.federation.outputs import (
    final_test_scores,
    metrics_csv,
    plot_series,
    write_final_test,
)

HISTORY = [
    {"round": 0, "metrics": {"aggregated_model_validation": {"accuracy": 0.4, "loss": 1.5}}},
    {"round": 1, "metrics": {"aggregated_model_validation": {"accuracy": 0.8, "loss": 0.6}}},
]
FINAL = {"rounds": 2, "test_accuracy": 0.875, "test_loss": 0.5, "test_samples": 40}


def test_scores_are_the_test_metrics_only() -> None:
    assert final_test_scores(FINAL) == {"accuracy": 0.875, "loss": 0.5}
    assert final_test_scores({"rounds": 2, "valid_accuracy": 0.9}) == {}


def test_plot_series_ends_with_the_final_test_point() -> None:
    series = plot_series(HISTORY, "accuracy", final_test_scores(FINAL), final_step=2)
    assert series[0] == ("aggregated model validation", [0.0, 1.0], [0.4, 0.8])
    assert series[-1] == ("final test", [2.0], [0.875])
    assert plot_series(HISTORY, "accuracy")[-1][0] != "final test"


def test_csv_gets_final_test_columns_on_the_last_row(tmp_path: Path) -> None:
    assert write_final_test(tmp_path, HISTORY, FINAL, step=2, tensorboard=False, plot=False)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    column = header.index("final_test/accuracy")
    assert lines[-1].split(",")[column] == "0.875" and lines[1].split(",")[column] == ""
    assert json.loads((tmp_path / "metrics.json").read_text())[-1]["final_test"]["loss"] == 0.5
    assert "final_test/accuracy" not in metrics_csv(HISTORY)  # the history itself is unchanged


def test_nothing_is_written_without_test_metrics(tmp_path: Path) -> None:
    assert not write_final_test(tmp_path, HISTORY, {"valid_accuracy": 0.9}, step=2)
    assert list(tmp_path.iterdir()) == []


def test_plot_with_the_marker_is_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert write_final_test(tmp_path, HISTORY, FINAL, step=2, tensorboard=False, plot=True)
    assert (tmp_path / "metrics.png").read_bytes()[:4] == b"\x89PNG"
