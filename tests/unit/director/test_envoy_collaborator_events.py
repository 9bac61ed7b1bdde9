"""`fx collaborator start --events-fd` writes one JSON line per finished task (what an envoy
reads), in a real federation: an aggregator and a collaborator as `fx` subprocesses, TLS off,
the no-op runner."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
FX = [sys.executable, "-m", "openfl_like.cli.main"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FX_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _plan(dest: Path) -> Path:
    shutil.copytree(REPO / "plans" / "noop_bench", dest)
    doc = yaml.safe_load((dest / "plan.yaml").read_text())
    doc["aggregator"]["rounds_to_train"] = 2
    doc["aggregator"]["port"] = 0
    doc["task_runner"]["params"]["size_mib"] = 0.01
    doc["tasks"] = ["train", "locally_tuned_model_validation"]
    doc["network"]["tls"] = False
    (dest / "plan.yaml").write_text(yaml.safe_dump(doc))
    (dest / "cols.yaml").write_text(yaml.safe_dump({"collaborators": ["col1"]}))
    (dest / "data.yaml").write_text(yaml.safe_dump({"col1": 0}))
    return dest


@pytest.mark.slow
def test_collaborator_writes_one_event_line_per_finished_task(tmp_path: Path) -> None:
    plan = _plan(tmp_path / "plan")
    processes: list[subprocess.Popen[str]] = []
    drain: threading.Thread | None = None
    try:
        aggregator = subprocess.Popen(
            [*FX, "aggregator", "start", "-p", str(plan), "--pki-dir", str(tmp_path / "pki"),
             "--workspace", str(tmp_path / "agg"), "--port", "0"],
            cwd=tmp_path, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        processes.append(aggregator)
        assert aggregator.stderr is not None
        port = None
        seen: list[str] = []
        for line in aggregator.stderr:
            seen.append(line)
            match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        assert port, "".join(seen)
        drain = threading.Thread(target=lambda: [None for _ in aggregator.stderr or ()],
                                 daemon=True)
        drain.start()
        read_fd, write_fd = os.pipe()
        collaborator = subprocess.Popen(
            [*FX, "collaborator", "start", "-n", "col1", "-p", str(plan), "--pki-dir",
             str(tmp_path / "pki"), "--aggregator", f"127.0.0.1:{port}", "--workspace",
             str(tmp_path / "col"), "--events-fd", str(write_fd)],
            cwd=tmp_path, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, pass_fds=(write_fd,), start_new_session=True)
        processes.append(collaborator)
        os.close(write_fd)
        with os.fdopen(read_fd) as events:
            lines = events.read().splitlines()  # EOF when the collaborator exits
        output = collaborator.communicate(timeout=120)[0]
        assert collaborator.returncode == 0, output
        assert aggregator.wait(timeout=60) == 0
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        if drain is not None:
            drain.join(10)
        for process in processes:
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    events_seen = [json.loads(line) for line in lines]
    pairs = [(e["round"], e["task"]) for e in events_seen]
    # two training rounds of (train, local validation), then the final validation round
    assert pairs[:4] == [(0, "train"), (0, "locally_tuned_model_validation"),
                         (1, "train"), (1, "locally_tuned_model_validation")], pairs
    assert all(set(e) == {"round", "task", "metrics", "samples"} for e in events_seen)
    assert all(isinstance(v, float) for e in events_seen for v in e["metrics"].values())
    assert events_seen[0]["samples"] > 0 and "loss" in events_seen[0]["metrics"]
