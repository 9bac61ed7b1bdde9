"""Logging setup. Library modules call get_logger(); only entry points call configure_logging()."""

from __future__ import annotations

import logging
import os

_ROOT = "openfl_like"


def get_logger(name: str) -> logging.Logger:
    if not name.startswith(_ROOT):
        name = f"{_ROOT}.{name}"
    return logging.getLogger(name)


def configure_logging(level: str | int | None = None, *, fmt: str | None = None) -> None:
    """Send the project's logs to stderr with timestamps; level from argument or FX_LOG_LEVEL."""
    chosen = level if level is not None else os.environ.get("FX_LOG_LEVEL", "INFO")
    if isinstance(chosen, str):
        chosen = chosen.upper()
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter(fmt or "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger(_ROOT)
    root.handlers[:] = [handler]
    root.setLevel(chosen)
    root.propagate = False
