"""core.logging: the JSON format (fields, context, exceptions), the format choice, the
rotating file."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from openfl_like.core.errors import ConfigError
from openfl_like.core.logging import (
    ContextFilter,
    JsonFormatter,
    add_log_file,
    chosen_format,
    configure_logging,
    get_logger,
    log_context,
    set_log_fields,
)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The project's logs as JSON into a buffer; the root logger restored afterwards."""
    root = logging.getLogger("openfl_like")
    saved = (list(root.handlers), root.level, root.propagate)
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    set_log_fields(federation=None, round=None, collaborator=None)  # an in-process aggregator
    try:
        yield buffer
    finally:
        root.handlers[:], root.level, root.propagate = saved
        set_log_fields(federation=None, round=None, collaborator=None)


def _records(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_line_has_time_level_logger_and_message(json_lines: io.StringIO) -> None:
    # Execute
    get_logger("federation.x").warning("round %d closed", 3)
    # Assert
    [record] = _records(json_lines)
    assert record["level"] == "WARNING"
    assert record["logger"] == "openfl_like.federation.x"
    assert record["message"] == "round 3 closed"
    assert str(record["time"]).endswith("Z") and "T" in str(record["time"])
    assert not {"federation", "round", "collaborator", "exc"} & set(record)


def test_context_fields_process_scope_and_extra_in_that_precedence(
        json_lines: io.StringIO) -> None:
    # Prepare
    log = get_logger("app.test")
    set_log_fields(federation="digits")
    # Execute
    log.info("a")
    with log_context(collaborator="col1", round=2):
        log.info("b")
        with log_context(round=3):
            log.info("c")
        log.info("d", extra={"round": 7})
    log.info("e")
    # Assert
    a, b, c, d, e = _records(json_lines)
    assert (a["federation"], "round" in a) == ("digits", False)
    assert (b["collaborator"], b["round"]) == ("col1", 2)
    assert c["round"] == 3 and c["collaborator"] == "col1"
    assert d["round"] == 7
    assert e["federation"] == "digits" and "collaborator" not in e


def test_context_is_per_thread(json_lines: io.StringIO) -> None:
    log = get_logger("app.test")
    with log_context(collaborator="col1"):
        thread = threading.Thread(target=lambda: log.info("other thread"))
        thread.start()
        thread.join()
    [record] = _records(json_lines)
    assert "collaborator" not in record


def test_exception_goes_in_exc_field_on_one_line(json_lines: io.StringIO) -> None:
    # Execute
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        get_logger("x").exception("it failed")
    # Assert: one physical line, the traceback in "exc"
    text = json_lines.getvalue()
    assert text.count("\n") == 1
    [record] = _records(json_lines)
    assert record["message"] == "it failed"
    assert "Traceback" in str(record["exc"]) and "ValueError: bad" in str(record["exc"])


def test_format_choice_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FX_LOG_FORMAT", raising=False)
    assert chosen_format() == "text"
    monkeypatch.setenv("FX_LOG_FORMAT", "JSON")
    assert chosen_format() == "json"
    assert chosen_format("text") == "text"
    monkeypatch.setenv("FX_LOG_FORMAT", "xml")
    with pytest.raises(ConfigError, match="FX_LOG_FORMAT"):
        chosen_format()


def test_log_file_rotates_in_the_console_format(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: JSON on the console, a tiny rotating file
    monkeypatch.setenv("FX_LOG_FORMAT", "json")
    root = logging.getLogger("openfl_like")
    saved = (list(root.handlers), root.level, root.propagate)
    try:
        configure_logging("INFO")
        path = tmp_path / "logs" / "aggregator.log"
        handler = add_log_file(path, max_bytes=2000, backups=2)
        assert isinstance(handler, logging.handlers.RotatingFileHandler)
        # Execute
        for number in range(100):
            get_logger("t").info("line %d %s", number, "x" * 40)
        # Assert: rotated, at most 2 backups, every line JSON
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["aggregator.log", "aggregator.log.1", "aggregator.log.2"]
        lines = path.read_text().splitlines()
        assert lines and all(json.loads(line)["logger"] == "openfl_like.t" for line in lines)
        assert json.loads(lines[-1])["message"].startswith("line 99 ")
    finally:
        for handler in root.handlers:
            handler.close()
        root.handlers[:], root.level, root.propagate = saved
