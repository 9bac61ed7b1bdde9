"""The rotating log file each long-running command keeps in its workspace's ``logs/``.

``fx aggregator start`` writes ``logs/aggregator.log``, ``fx collaborator start``
``logs/collaborator-NAME.log``, ``fx director start`` and ``fx envoy start`` ``director.log`` and
``envoy-NAME.log`` in their workspaces: 10 MiB per file, 5 old files kept, in the console's
format (``--log-format``). ``FX_LOG_FILE=off`` turns it off: `fx plan run` sets it for its
children, whose whole output it already captures into ``logs/`` (each line would be written
twice otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

from openfl_like.core.logging import add_log_file, get_logger

LOG_FILE_ENV = "FX_LOG_FILE"
_OFF = frozenset({"off", "0", "no", "false"})

log = get_logger(__name__)


def log_files_enabled() -> bool:
    return os.environ.get(LOG_FILE_ENV, "").strip().lower() not in _OFF


def write_log_file(logs_dir: str | Path, name: str) -> Path | None:
    """Add ``logs_dir/NAME.log`` (rotating) to this process's logs; None when turned off."""
    if not log_files_enabled():
        return None
    path = Path(logs_dir).resolve() / f"{name}.log"
    add_log_file(path)
    log.debug("logging to %s", path)
    return path
