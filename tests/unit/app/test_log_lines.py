"""Log lines an operator reads an outage from, and the log-file and plain-output plumbing:
app.reconnect (collaborator), federation.presence (aggregator), app.logfiles, the per-round
feed and line of a piped `fx plan run`, and `fx --log-format` handed down to children."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from openfl_like.app.logfiles import write_log_file
from openfl_like.app.reconnect import OutageLog, OutageLoggingRetry
from openfl_like.app.round_feed import RoundFeed
from openfl_like.cli.plan import round_line
from openfl_like.federation.presence import Presence


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """pytest's caplog, attached to the project's logger itself: an earlier `fx` run in this
    process (CliRunner) may have turned its propagation off."""
    logger = logging.getLogger("openfl_like")
    saved = (logger.level, logger.propagate)
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.level, logger.propagate = saved

class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "Connection refused"


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_outage_logged_once_when_lost_and_once_when_back(
        caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: a fake clock that the retry's sleeps advance; 5 failures, then success
    caplog.set_level(logging.INFO, logger="openfl_like")
    now = [100.0]
    failures = [5]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def operation() -> str:
        if failures[0]:
            failures[0] -= 1
            now[0] += 1.0
            raise Unavailable()
        return "ok"

    retry = OutageLoggingRetry(initial_backoff=1, max_backoff=1, clock=lambda: now[0],
                               sleep=sleep, outage=OutageLog("col1"))
    # Execute
    result = retry.call(operation, is_retryable=lambda e: True, describe="get tasks")
    # Assert
    assert result == "ok"
    lost = [m for m in _messages(caplog) if "connection to the aggregator lost" in m]
    back = [m for m in _messages(caplog) if "reconnected to the aggregator" in m]
    assert lost == ["col1: connection to the aggregator lost (get tasks: UNAVAILABLE: "
                    "Connection refused); retrying"]
    assert len(back) == 1 and back[0].startswith("col1: reconnected to the aggregator after ")
    assert float(back[0].split("after ")[1].split()[0]) >= 5.0


def test_a_busy_aggregator_is_not_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    class Busy(Unavailable):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.RESOURCE_EXHAUSTED

    caplog.set_level(logging.INFO, logger="openfl_like")
    calls = [0]

    def operation() -> int:
        calls[0] += 1
        if calls[0] == 1:
            raise Busy()
        return 1

    OutageLoggingRetry(initial_backoff=0, sleep=lambda s: None).call(
        operation, is_retryable=lambda e: True)
    assert not [m for m in _messages(caplog) if "connection" in m or "reconnected" in m]


def test_a_call_in_progress_after_an_outage_counts_as_reconnected(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the long-poll after the outage parks (the aggregator is back)
    monkeypatch.setattr("openfl_like.app.reconnect.PROBE_SECONDS", 0.05)
    caplog.set_level(logging.INFO, logger="openfl_like")
    outage = OutageLog("col1")
    outage.lost("get tasks", Unavailable(), 0.0)
    parked = threading.Event()
    retry = OutageLoggingRetry(outage=outage)
    # Execute: the call blocks until the line appears (or 5 s)

    def long_poll() -> None:
        for _ in range(500):
            if any("reconnected" in m for m in _messages(caplog)):
                parked.set()
                return
            threading.Event().wait(0.01)

    retry.call(long_poll, is_retryable=lambda e: False)
    # Assert
    assert parked.is_set()


def test_presence_logs_join_rejoin_and_restart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="openfl_like")
    presence = Presence()
    presence.contact("col2", 0, handshake=True)
    presence.contact("col2", 0)  # an ordinary call: nothing
    presence.contact("col2", 3, readmitted="silent for more than 10 s")
    presence.contact("col2", 4, handshake=True)
    presence.contact("col3", 4)  # first contact after an aggregator restart
    assert _messages(caplog) == [
        "col2 joined at round 0",
        "col2 rejoined at round 3 after being dropped (silent for more than 10 s)",
        "col2 rejoined at round 4 (a new handshake: the collaborator restarted)",
        "col3 joined at round 4 (first call to this aggregator process)",
    ]
    assert caplog.records[0].collaborator == "col2"


def test_log_file_in_the_workspace_or_off(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger("openfl_like")
    before = list(root.handlers)
    try:
        monkeypatch.delenv("FX_LOG_FILE", raising=False)
        path = write_log_file(tmp_path / "logs", "collaborator-col1")
        assert path == (tmp_path / "logs" / "collaborator-col1.log").resolve()
        root.setLevel(logging.INFO)
        logging.getLogger("openfl_like.test").info("hello file")
        assert "hello file" in path.read_text()
        monkeypatch.setenv("FX_LOG_FILE", "off")
        assert write_log_file(tmp_path / "other", "aggregator") is None
        assert not (tmp_path / "other").exists()
    finally:
        for handler in root.handlers[len(before):]:
            handler.close()
        root.handlers[:] = before


def test_round_feed_reports_each_round_once_in_order(tmp_path: Path) -> None:
    # Prepare
    metrics = tmp_path / "metrics.json"
    seen: list[int] = []
    feed = RoundFeed(metrics, lambda record: seen.append(record["round"]))
    # Execute: the status runs ahead of metrics.json (written after it), then catches up
    metrics.write_text(json.dumps([{"round": 0}]))
    feed.update({"last_round": {"round": 2}})
    metrics.write_text(json.dumps([{"round": 0}, {"round": 1}, {"round": 2}]))
    feed.update({"last_round": {"round": 2}})
    feed.update({"last_round": {"round": 2}})
    feed.update({"last_round": None})
    # Assert
    assert seen == [0, 1, 2]


def test_round_line_fits_80_columns() -> None:
    record = {"round": 12, "closed_by": "buffer_full", "collaborators": ["c"] * 120,
              "duration_seconds": 12345.6,
              "metrics": {"aggregated_model_validation": {"accuracy": 0.98765, "loss": 123.45},
                          "train": {"loss": 0.5}}}
    line = round_line(record, 100)
    assert line.startswith("round 12 (13 of 100): buffer_full, 120 cols, 12345.6 s")
    assert len(line) <= 80 and "val acc 0.9877" in line
    assert round_line({**record, "round": 100}, 100).startswith("round 100 (final validation)")


def test_log_format_option_is_handed_to_children(monkeypatch: pytest.MonkeyPatch) -> None:
    from openfl_like.cli.main import cli

    monkeypatch.delenv("FX_LOG_FORMAT", raising=False)
    root = logging.getLogger("openfl_like")
    saved = (list(root.handlers), root.level, root.propagate)
    try:
        result = CliRunner().invoke(cli, ["--log-format", "json", "plan", "--help"])
        assert result.exit_code == 0, result.output
        assert os.environ["FX_LOG_FORMAT"] == "json"
        bad = CliRunner().invoke(cli, ["--log-format", "xml", "plan", "--help"])
        assert bad.exit_code != 0 and "xml" in bad.output
    finally:
        root.handlers[:], root.level, root.propagate = saved
        monkeypatch.delenv("FX_LOG_FORMAT", raising=False)
