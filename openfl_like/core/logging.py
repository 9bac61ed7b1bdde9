"""Logging setup. Library modules call get_logger(); only entry points call configure_logging().

Two formats (``--log-format`` or ``FX_LOG_FORMAT``): ``text`` (the default, for people) and
``json``: one object per line, for log shippers::

    {"time": "2024-05-01T12:00:00.123Z", "level": "INFO", "logger": "openfl_like.federation...",
     "message": "round 3 closed ...", "federation": "digits", "round": 3, "exc": "Traceback ..."}

The context fields (``federation``, ``round``, ``collaborator``) appear where known. They come
from, in order of precedence: a call's ``extra={"round": 3}``; the innermost
``with log_context(round=3):`` of the current thread (a contextvar: a new thread starts
without it); ``set_log_fields(federation=...)``, process-wide, set by the composition root once
it knows who this process is. ``exc`` holds the traceback (escaped newlines: still one line).

A long-running command adds a rotating file (``add_log_file``) in the same format; the console
stays on stderr.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import logging.handlers
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

from openfl_like.core.errors import ConfigError

_ROOT = "openfl_like"
FORMAT_ENV = "FX_LOG_FORMAT"
LEVEL_ENV = "FX_LOG_LEVEL"
LOG_FORMATS = ("text", "json")
CONTEXT_FIELDS = ("federation", "round", "collaborator")
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FILE_MAX_BYTES = 10 << 20
FILE_BACKUPS = 5

_process_fields: dict[str, object] = {}
_NO_FIELDS: Mapping[str, object] = MappingProxyType({})
_scoped_fields: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "openfl_like_log_context", default=_NO_FIELDS)


def get_logger(name: str) -> logging.Logger:
    if not name.startswith(_ROOT):
        name = f"{_ROOT}.{name}"
    return logging.getLogger(name)


# ------------------------------------------------------------------------------ context
def set_log_fields(**fields: object) -> None:
    """Process-wide context fields (e.g. the federation); a value of None removes one."""
    for key, value in fields.items():
        if value is None:
            _process_fields.pop(key, None)
        else:
            _process_fields[key] = value


@contextlib.contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Context fields for the log records of this thread while the block runs (nestable)."""
    token = _scoped_fields.set({**_scoped_fields.get(), **fields})
    try:
        yield
    finally:
        _scoped_fields.reset(token)


class ContextFilter(logging.Filter):
    """Puts the known context fields on each record (a call's ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scoped = _scoped_fields.get()
        for key in CONTEXT_FIELDS:
            if getattr(record, key, None) is None:
                value = scoped.get(key, _process_fields.get(key))
                if value is not None:
                    setattr(record, key, value)
        return True


# ------------------------------------------------------------------------------ formats
class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, timezone.utc)
        out: dict[str, object] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def chosen_format(log_format: str | None = None) -> str:
    """``log_format``, else FX_LOG_FORMAT, else text; ConfigError for anything else."""
    value = (log_format or os.environ.get(FORMAT_ENV) or "text").strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"{FORMAT_ENV}={value!r}: expected one of {', '.join(LOG_FORMATS)}")
    return value


def make_formatter(log_format: str, *, fmt: str | None = None,
                   datefmt: str = "%H:%M:%S") -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter(fmt or TEXT_FORMAT, datefmt)


# ------------------------------------------------------------------------------ set-up
def configure_logging(level: str | int | None = None, *, fmt: str | None = None,
                      log_format: str | None = None) -> None:
    """Send the project's logs to stderr; level from argument or FX_LOG_LEVEL, format from
    argument or FX_LOG_FORMAT. Replaces (and closes) handlers of an earlier call."""
    chosen = level if level is not None else os.environ.get(LEVEL_ENV, "INFO")
    if isinstance(chosen, str):
        chosen = chosen.upper()
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(chosen_format(log_format), fmt=fmt))
    handler.addFilter(ContextFilter())
    root = logging.getLogger(_ROOT)
    old, root.handlers[:] = list(root.handlers), [handler]
    for previous in old:
        previous.close()
    root.setLevel(chosen)
    root.propagate = False


def add_log_file(path: str | Path, *, max_bytes: int = FILE_MAX_BYTES,
                 backups: int = FILE_BACKUPS) -> logging.Handler:
    """Also write the project's logs to ``path``, rotated at ``max_bytes`` with ``backups``
    old files kept; same format as the console, with the date in text lines (a file outlives
    a day). Creates the folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        target, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    handler.setFormatter(make_formatter(_current_format(), datefmt="%Y-%m-%d %H:%M:%S"))
    handler.addFilter(ContextFilter())
    logging.getLogger(_ROOT).addHandler(handler)
    return handler


def _current_format() -> str:
    """The format the console handler uses (json or text)."""
    for handler in logging.getLogger(_ROOT).handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return "json"
    return chosen_format() if not logging.getLogger(_ROOT).handlers else "text"
