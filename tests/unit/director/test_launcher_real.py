"""A real aggregator subprocess started by the director's launcher: a tiny numpy plan, one
round, TLS off, two collaborators in-process on their own .npz data. The events fd carries the
rounds' metrics and the final metrics; the experiment ends FINISHED and its models exist."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openfl_like.app.collaborator import run_collaborator
from openfl_like.core.experiments import EventKind, ExperimentKind, ExperimentState, Submission
from openfl_like.core.waiting import Wakeup
from openfl_like.director.director import Director
from openfl_like.director.launcher import SubprocessLauncher
from openfl_like.pki import PkiStore
from openfl_like.plan.load import load_plan
from openfl_like.plan.write import write_data_description
from tests.unit.director.conftest import make_config, package, plan_doc, shard

REPO = Path(__file__).resolve().parents[3]
SITES = ("site_a", "site_b")


def _free_range() -> tuple[int, int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return port, port


def _site_data(folder: Path, name: str, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(folder / f"{name}.npz", x_train=x, y_train=y)
    return write_data_description(folder / f"{name}.yaml", "npz",
                                  {"path": f"{name}.npz", "valid_fraction": 0.2})


@pytest.mark.timeout(180)
def test_director_runs_a_real_aggregator_to_finished(tmp_path: Path) -> None:
    # Prepare: a director whose launcher runs this worktree's code
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("FX_")}
    config = make_config(tmp_path / "ws", aggregator_ports=_free_range(),
                         host="127.0.0.1")
    director = Director(config, pki_dir=tmp_path / "pki",
                        launcher_factory=lambda: SubprocessLauncher(env=env))
    for site in SITES:
        director.update_shard_info(site, shard())
    director.start()
    errors: list[BaseException] = []
    try:
        doc = plan_doc(stragglers={"min_collaborators": 2, "liveness_timeout_seconds": 30},
                       collaborator={"heartbeat_seconds": 1})
        director.set_new_experiment("alice", Submission("exp1", ExperimentKind.TRAIN, 100),
                                    package(doc))
        end = time.monotonic() + 30
        while director.registry.experiment("exp1").state is ExperimentState.QUEUED:
            assert time.monotonic() < end
            time.sleep(0.01)
        plan = load_plan(director.runner.paths("exp1").plan_dir)

        def collaborate(site: str, seed: int) -> None:
            try:
                run_collaborator(plan, site, pki=PkiStore(tmp_path / "pki"),
                                 workspace=tmp_path / site,
                                 data_file=_site_data(tmp_path, site, seed))
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=collaborate, args=(s, i)) for i, s in enumerate(SITES)]
        for thread in threads:
            thread.start()
        # Execute: follow the event stream to its end
        events: list[Any] = list(director.metric_stream("alice", "exp1", 1, wakeup=Wakeup()))
        for thread in threads:
            thread.join(60)
        # Assert
        record = director.registry.experiment("exp1")
        log_tail = "\n".join(e.text for e in events if e.kind is EventKind.LOG)[-3000:]
        assert not errors, errors
        assert record.state is ExperimentState.FINISHED, f"{record.reason}\n{log_tail}"
        metrics = [e for e in events if e.kind is EventKind.METRICS and e.source == "aggregator"]
        tasks = {(e.round_number, e.task) for e in metrics}
        assert (0, "train") in tasks and (1, "aggregated_model_validation") in tasks
        assert "final" in {e.task for e in metrics}
        assert "valid_accuracy" in record.final_metrics
        assert events[-1].kind is EventKind.STATUS and events[-1].text == "finished"
        assert director.trained_model("alice", "exp1", "last").path == "final_model.npz"
    finally:
        director.stop(grace=5.0)
