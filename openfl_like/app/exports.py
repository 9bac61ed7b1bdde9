"""Exported models' checksums, and the fault-injection switch of the aggregator process.

``SHA256SUMS`` in the outputs folder lists the exported models in the format ``sha256sum -c``
reads, so a user (or a test) can check with a standard tool that the files are what the
aggregator wrote. Exports are derived from the checksummed state and redone by a restart, so
resume never reads them.

``FX_FAULT_AT=step:round`` (steps of ``federation.round_close``: aggregate, model_write,
snapshot_write, outputs; round ``*`` for any) makes the aggregator process kill itself with
SIGKILL at that step: what a power cut at that moment does, for fault-injection tests. With
``FX_FAULT_AT=step:round:raise`` the step raises instead (an injected failure that the closer
retries, then fails the federation on).
"""

from __future__ import annotations

import hashlib
import os
import signal
from pathlib import Path

from openfl_like.core.errors import ConfigError
from openfl_like.core.fsutil import atomic_write
from openfl_like.core.logging import get_logger
from openfl_like.federation.round_close import FaultHook

log = get_logger(__name__)

SUMS_FILE = "SHA256SUMS"
EXPORTED = ("final_model.npz", "best_model.npz", "final_model.keras", "best_model.keras")
FAULT_ENV = "FX_FAULT_AT"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(output_dir: Path) -> Path:
    lines = [f"{_sha256(output_dir / name)}  {name}\n" for name in EXPORTED
             if (output_dir / name).is_file()]
    path = output_dir / SUMS_FILE
    atomic_write(path, "".join(lines))
    return path


def fault_hook_from_env() -> FaultHook | None:
    spec = os.environ.get(FAULT_ENV, "").strip()
    if not spec:
        return None
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "raise"):
        raise ConfigError(f"{FAULT_ENV}={spec!r}: expected step:round or step:round:raise")
    step, round_spec = parts[0], parts[1]
    raise_instead = len(parts) == 3
    log.warning("fault injection armed: %s", spec)

    def hook(at: str, round_number: int) -> None:
        if at != step or round_spec not in ("*", str(round_number)):
            return
        if raise_instead:
            raise RuntimeError(f"injected failure at {at} of round {round_number}")
        log.warning("fault injection: SIGKILL at %s of round %d", at, round_number)
        os.kill(os.getpid(), signal.SIGKILL)

    return hook
