"""One party of a vertical pair, as a library call: ``run_party(plan, "leader", ...)``.

It composes the pieces: the party's data (checked before TensorFlow is even imported), its Keras
half (``vertical.keras_split``, imported here lazily: the only path from app to TensorFlow), its
checkpoints in ``<workspace>/checkpoints``, and a :class:`~openfl_like.vertical.Communicator`
over mutual TLS with the plan's addresses, names and timeouts; then ``vertical.training`` runs.

Signals: the first SIGTERM/SIGINT/SIGHUP asks for a stop at the next step boundary; the party
then says goodbye to its peer (which fails at once, naming this party) and raises
``StoppedBySignal`` (one line, exit 128 + signal). If the party is stuck waiting on its peer,
the communicator is shut down after ``STOP_GRACE_S`` so the wait ends too.

Outputs in the workspace: ``model.keras`` (this party's trained half, loadable in safe mode),
``result.json`` (accuracy, steps, resumed-from version) and ``logs/vertical-NAME.log``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from openfl_like.app.logfiles import write_log_file
from openfl_like.app.signals import TERMINATING_SIGNALS, SignalStop
from openfl_like.core.fsutil import atomic_write
from openfl_like.core.logging import get_logger, set_log_fields
from openfl_like.core.vertical import PartyRole
from openfl_like.plan.vertical_config import VerticalPlan
from openfl_like.vertical.checkpoints import CheckpointStore

# (not ``from openfl_like.vertical``: the package's lazy CommunicatorCallback import counts as a
# path to TensorFlow for import-linter)
from openfl_like.vertical.communicator import Communicator
from openfl_like.vertical.party_data import load_party_data
from openfl_like.vertical.training import PartyTraining
from openfl_like.vertical.wiring import default_settings, resolve_tls_files

log = get_logger(__name__)

STOP_GRACE_S = 3.0
MODEL_FILE, RESULT_FILE, CHECKPOINTS = "model.keras", "result.json", "checkpoints"


@dataclass(frozen=True)
class VerticalResult:
    """What one party's run produced."""

    role: str
    name: str
    test_accuracy: float
    steps: int
    resumed_from: int
    seconds: float
    model_file: Path


def _build_half(plan: VerticalPlan, role: PartyRole, features: int) -> Any:
    from openfl_like.vertical import keras_split  # TensorFlow: only now, data is fine

    if role is PartyRole.LEADER:
        return keras_split.LeaderHalf(plan.model, features)
    return keras_split.FollowerHalf(plan.model, features)


def run_party(plan: VerticalPlan, role: PartyRole | str, *, workspace: Path | None = None,
              pki_dir: Path | None = None, fresh: bool = False,
              progress: Callable[[str], None] = log.info,
              handle_signals: bool = True) -> VerticalResult:
    """Train this party's half with its peer, evaluate, save; see the module docstring."""
    role = role if isinstance(role, PartyRole) else PartyRole.parse(role)
    me, peer = plan.party(role), plan.peer(role)
    folder = (workspace or plan.party_workspace(role)).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    write_log_file(folder / "logs", f"vertical-{me.name}")
    set_log_fields(collaborator=me.name)
    data = load_party_data(plan, role)
    store = CheckpointStore(folder / CHECKPOINTS, keep=plan.checkpoint.keep)
    if fresh:
        store.clear()
        progress("--fresh: previous checkpoints removed")
    # The certificate files (FX_VERTICAL_* overrides included) are found now, so a missing one
    # is reported before seconds of TensorFlow import.
    settings = default_settings()
    tls_files = resolve_tls_files(name=me.name, tls_files=None, pki_dir=pki_dir,
                                  settings=settings)
    tls_files.read()  # ConfigError naming the file that is missing or unreadable
    comm = Communicator(
        role, peer.address, me.listen, name=me.name, peer_name=peer.name,
        session_id=plan.session_id, tls_files=tls_files, settings=settings,
        default_timeout_ms=plan.timeouts.default_ms,
        connect_timeout_ms=plan.timeouts.connect_ms,
        scan_interval_ms=plan.timeouts.scan_interval_ms)

    def on_stop(sig: Any) -> None:
        progress(f"{sig.name} received: stopping at the next step (a second signal exits now)")
        timer = threading.Timer(STOP_GRACE_S, comm.shutdown, args=(f"stopped by {sig.name}",))
        timer.daemon = True
        timer.start()

    with SignalStop(TERMINATING_SIGNALS if handle_signals else (), on_stop=on_stop) as stop:
        try:
            half = _build_half(plan, role, data.num_features)
            stop.raise_if_stopped()
            progress(f"{me.name} ({role.value}) on {me.listen}: connecting to {peer.name} at "
                     f"{peer.address} (session {plan.session_id})")
            comm.initialize()
            progress(f"connected to {peer.name}")
            training = PartyTraining(plan, role, comm, data, half, store,
                                     check_stop=stop.raise_if_stopped, progress=progress)
            outcome = training.run()
        except BaseException as error:
            if stop.signum is not None:  # whatever broke, the cause was the stop request
                reason = f"stopped by {stop.signum.name}"
                comm.shutdown(reason)
                stop.raise_if_stopped(f"{reason} at step {comm.step}")
            comm.shutdown(f"failed: {getattr(error, 'message', None) or error}")
            raise
        comm.shutdown("done")
    model_file = folder / MODEL_FILE
    half.save_keras(model_file)
    result = VerticalResult(role=role.value, name=me.name, test_accuracy=outcome.test_accuracy,
                            steps=outcome.steps, resumed_from=outcome.resumed_from,
                            seconds=round(outcome.seconds, 3), model_file=model_file)
    atomic_write(folder / RESULT_FILE,
                 json.dumps({**asdict(result), "model_file": str(model_file)}, indent=1) + "\n")
    return result
