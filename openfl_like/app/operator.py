"""What `fx aggregator status` shows: a remote aggregator's status over mutual TLS with an
``operator`` certificate, or the status file of an aggregator in the local workspace.

Either way the answer is the same JSON-able dict (``federation.status_view`` plus the
transport's uploads in flight); the local one adds what only the disk knows: whether the
process still runs (``running``; a status file not refreshed for ``STALE_SECONDS`` means it
died without saying so) and, once it has stopped, the final result (``final_metrics.json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openfl_like.app.common import Workspace, parse_address
from openfl_like.app.settings import transport_settings
from openfl_like.core.errors import FederationError
from openfl_like.pki import PkiStore
from openfl_like.plan.schema import Plan
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.operator_client import OperatorClient

OPERATOR_ENV = "FX_OPERATOR"  # the operator certificate's name when -n is not given
# The aggregator rewrites its status file twice a second; this much older means it is gone.
STALE_SECONDS = 10.0


def remote_status(plan: Plan, *, pki: PkiStore, address: str, operator: str,
                  client: OperatorClient | None = None) -> dict[str, Any]:
    """GetStatus of the aggregator at ``address`` (HOST:PORT), asked as ``operator``."""
    host, port = parse_address(address)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    tls_files = TlsFiles.for_participant(pki, operator)
    tls_files.read()  # fail early, naming the missing file
    own = client is None
    client = client or OperatorClient(
        target=target, operator_name=operator, aggregator_name=plan.aggregator.name,
        federation_uuid=plan.federation_uuid, tls_files=tls_files,
        settings=transport_settings(plan))
    try:
        status = dict(client.get_status())
    finally:
        if own:
            client.close()
    status.setdefault("address", address)
    status["source"] = f"remote {address} as {operator}"
    return status


def local_status(plan: Plan, workspace: str | Path | None = None,
                 *, now: float | None = None) -> dict[str, Any]:
    """The workspace's status.json, with ``running`` made honest and the final result added."""
    ws = Workspace.for_plan(plan, workspace)
    try:
        status: dict[str, Any] = json.loads(ws.status_path.read_text())
    except FileNotFoundError:
        raise FederationError(f"no aggregator status in {ws.root} (not started yet?)") from None
    except ValueError as exc:
        raise FederationError(f"{ws.status_path}: unreadable status ({exc})") from None
    updated = status.get("updated_unix")
    age = (time.time() if now is None else now) - float(updated) if updated else 0.0
    if status.get("running", True) and age > STALE_SECONDS:
        status["running"] = False
        status["stale_seconds"] = round(age, 1)
    if not status.get("running", True):
        final = _final_metrics(ws.final_metrics_path)
        if final is not None:
            status["final_metrics"] = final
    status["source"] = str(ws.status_path)
    return status


def _final_metrics(path: Path) -> Mapping[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


__all__ = ["OPERATOR_ENV", "STALE_SECONDS", "local_status", "remote_status"]
