"""Helpers for driving the real `fx` CLI in subprocesses.

- ``run_fx``: one short command, captured (CompletedProcess).
- ``ProcessRegistry`` (fixture ``procs``): long-running `fx` processes whose output is read by
  threads, so ``wait_for(pattern)`` blocks on new lines instead of sleeping; every process (and
  whatever it spawned) is killed in teardown: SIGTERM to its process group, SIGKILL after a grace.
- ``free_port``, ``copy_plan`` (a plan folder copied into tmp with YAML edits), ``make_pki`` (a
  workspace PKI from our own library) and the session-wide ``shared_pki``.
- ``assert_clean_error``: the CLI's contract for refusals: one ``fx: error:`` line, no traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest
import yaml

from openfl_like.core.ids import Role
from openfl_like.pki import CertificateAuthority, PkiStore

REPO = Path(__file__).resolve().parents[2]
PLANS = REPO / "plans"
FX_SCRIPT = Path(sys.executable).with_name("fx")
FX: list[str] = (
    [str(FX_SCRIPT)] if FX_SCRIPT.exists() else [sys.executable, "-m", "openfl_like.cli.main"]
)
AGGREGATOR = "aggregator"
COLLABORATORS = ("col1", "col2", "col3")
OUTSIDER = "col9"  # has a valid certificate of our CA but is not in any cols.yaml
ERROR_PREFIX = "fx: error:"
FINAL_ACCURACY = re.compile(r"final test accuracy: (\d+(?:\.\d+)?)")
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
GRACE_SECONDS = 5.0


# ------------------------------------------------------------------------------ plain commands
def fx_env(**extra: str) -> dict[str, str]:
    """The environment of a child `fx`: no FX_* settings leak in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FX_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def run_fx(*args: str | Path, cwd: Path, timeout: float = 120,
           env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one `fx` command to completion and capture its output."""
    return subprocess.run(
        [*FX, *map(str, args)], cwd=cwd, capture_output=True, text=True,
        env=dict(env) if env is not None else fx_env(), timeout=timeout,
    )


def assert_clean_error(result: subprocess.CompletedProcess[str] | FxProcess,
                       *, mentions: tuple[str, ...] = ()) -> str:
    """Non-zero exit, exactly one `fx: error:` line, no traceback; returns the error line."""
    if isinstance(result, FxProcess):
        code, out, err = result.returncode, result.stdout.text(), result.stderr.text()
    else:
        code, out, err = result.returncode, result.stdout, result.stderr
    both = f"--- stdout\n{out}\n--- stderr\n{err}"
    assert code not in (0, None), f"expected a failure, got exit {code}\n{both}"
    assert "Traceback" not in out + err, both
    errors = [line for line in (out + "\n" + err).splitlines() if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, f"expected one '{ERROR_PREFIX}' line, got {errors}\n{both}"
    line = errors[0]
    for word in mentions:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}\n{both}"
    return line


# ------------------------------------------------------------------------------ processes
class LogStream:
    """Lines of one pipe, read by a thread; ``wait_for`` wakes on each new line (no polling)."""

    def __init__(self, pipe: IO[str], label: str) -> None:
        self.label = label
        self._lines: list[str] = []
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True,
                                        name=f"log-{label}")
        self._thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        try:
            for line in pipe:
                with self._cond:
                    self._lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            pipe.close()

    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def text(self) -> str:
        return "\n".join(self.lines())

    def join(self, timeout: float = GRACE_SECONDS) -> None:
        self._thread.join(timeout)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float, *,
                 start: int = 0) -> re.Match[str]:
        """First line (from index ``start``) matching ``pattern``; fails at EOF or timeout."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        end = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self._lines):
                    match = regex.search(self._lines[index])
                    index += 1
                    if match:
                        return match
                if self._closed:
                    raise AssertionError(f"{self.label} ended before a line matched "
                                         f"{regex.pattern!r}:\n{self._tail()}")
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no line of {self.label} matched {regex.pattern!r} "
                                         f"within {timeout:g} s:\n{self._tail()}")
                self._cond.wait(remaining)

    def _tail(self, count: int = 40) -> str:
        return "\n".join(self._lines[-count:])


@dataclass
class FxProcess:
    """One `fx` command running in its own process group (its pid is the group id)."""

    name: str
    popen: subprocess.Popen[str]
    stdout: LogStream
    stderr: LogStream

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        """Exit code; fails the test with the process's output if it runs past ``timeout``."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} still running after {timeout:g} s:\n"
                                 f"{self.output()}") from None
        self.stdout.join()
        self.stderr.join()
        return code

    def wait_ok(self, timeout: float) -> None:
        code = self.wait(timeout)
        assert code == 0, f"{self.name} exited with {code}:\n{self.output()}"

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill9(self) -> None:
        """SIGKILL the whole group and reap it: no handler runs, nothing is flushed."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(GRACE_SECONDS)

    def output(self) -> str:
        return (f"=== {self.name} (pid {self.pid}, exit {self.returncode}) stdout\n"
                f"{self.stdout.text()}\n=== {self.name} stderr\n{self.stderr.text()}")


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid`` from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[3])


def _related_pids(roots: set[int]) -> set[int]:
    """Descendants of ``roots`` plus every process in their sessions (children that detached
    from the group are still found through the parent chain while the parent lives)."""
    table: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                table[int(entry.name)] = stat
    found = {pid for pid, (_, sid) in table.items() if sid in roots}
    frontier = set(roots)
    while frontier:
        children = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= children
        frontier = children
    return found - {os.getpid()}


class ProcessRegistry:
    """Starts `fx` processes and guarantees they are all gone after the test."""

    def __init__(self) -> None:
        self.processes: list[FxProcess] = []

    def start(self, *args: str | Path, name: str, cwd: Path,
              env: Mapping[str, str] | None = None) -> FxProcess:
        popen = subprocess.Popen(
            [*FX, *map(str, args)], cwd=cwd, env=dict(env) if env is not None else fx_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, bufsize=1, start_new_session=True,
        )
        assert popen.stdout is not None and popen.stderr is not None
        process = FxProcess(name, popen, LogStream(popen.stdout, f"{name} stdout"),
                            LogStream(popen.stderr, f"{name} stderr"))
        self.processes.append(process)
        return process

    def kill_all(self) -> None:
        """SIGTERM every group (and strays it spawned), then SIGKILL what is left."""
        roots = {p.pid for p in self.processes}
        strays = _related_pids(roots) - roots
        for process in self.processes:
            if process.alive():
                process.signal_group(signal.SIGTERM)
        end = time.monotonic() + GRACE_SECONDS
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(max(0.0, end - time.monotonic()))
        for process in self.processes:
            process.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(GRACE_SECONDS)
        for pid in strays | (_related_pids(roots) - roots):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def report(self) -> str:
        return "\n".join(p.output() for p in self.processes)


@pytest.fixture
def procs() -> Iterator[ProcessRegistry]:
    registry = ProcessRegistry()
    try:
        yield registry
    finally:
        registry.kill_all()
        if registry.processes:
            print(registry.report())  # shown by pytest only when the test failed


# ------------------------------------------------------------------------------ ports, plans
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _set_dotted(doc: dict[str, Any], dotted: str, value: object) -> None:
    node = doc
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def copy_plan(name: str, dest: Path, edits: Mapping[str, object] | None = None, *,
              collaborators: tuple[str, ...] | None = None) -> Path:
    """Copy ``plans/<name>`` to ``dest`` and apply dotted-key edits to its plan.yaml
    (``{"aggregator.rounds_to_train": 2}``); ``collaborators`` rewrites cols.yaml/data.yaml."""
    source = PLANS / name
    assert (source / "plan.yaml").is_file(), f"no plan at {source}"
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("workspace", "pki", "__pycache__"))
    plan_path = dest / "plan.yaml"
    doc = yaml.safe_load(plan_path.read_text())
    for dotted, value in (edits or {}).items():
        _set_dotted(doc, dotted, value)
    plan_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    if collaborators is not None:
        (dest / "cols.yaml").write_text(yaml.safe_dump({"collaborators": list(collaborators)}))
        (dest / "data.yaml").write_text(
            yaml.safe_dump({c: i for i, c in enumerate(collaborators)}, sort_keys=False))
    return dest


def plan_collaborators(plan_dir: Path) -> list[str]:
    names: list[str] = yaml.safe_load((plan_dir / "cols.yaml").read_text())["collaborators"]
    return names


# ------------------------------------------------------------------------------ PKI
def make_pki(root: Path, names: tuple[str, ...] = (*COLLABORATORS, OUTSIDER), *,
             aggregator: str = AGGREGATOR) -> PkiStore:
    """A two-tier CA in ``root`` with an aggregator (127.0.0.1/localhost) and client certs."""
    store = PkiStore(root)
    ca = CertificateAuthority.init(store)
    ca.certify(aggregator, Role.AGGREGATOR, sans=["localhost", "127.0.0.1"])
    for name in names:
        ca.certify(name, Role.COLLABORATOR)
    return store


@pytest.fixture(scope="session")
def shared_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PKI for every test that does not exercise PKI creation itself (read-only use)."""
    return make_pki(tmp_path_factory.mktemp("pki")).root


# ------------------------------------------------------------------------------ federation
@dataclass
class Federation:
    """An aggregator and its collaborators started as separate `fx` processes."""

    plan_dir: Path
    pki_dir: Path
    workspace: Path
    port: int
    registry: ProcessRegistry
    aggregator: FxProcess | None = None
    collaborators: dict[str, FxProcess] = field(default_factory=dict)

    def start_aggregator(self, *, timeout: float = 60) -> FxProcess:
        """`fx aggregator start`, returned once it logs that it listens (``port`` 0: the
        aggregator picks one, and ``port`` becomes the one its log line names)."""
        self.aggregator = self.registry.start(
            "aggregator", "start", "-p", self.plan_dir, "--pki-dir", self.pki_dir,
            "--workspace", self.workspace, "--port", str(self.port),
            name="aggregator", cwd=self.plan_dir,
        )
        match = self.aggregator.stderr.wait_for(LISTENING, timeout)
        bound = int(match.group(1))
        assert bound == self.port or (self.port == 0 and bound > 0), match.group(0)
        self.port = bound
        return self.aggregator

    def start_collaborator(self, name: str, *, label: str | None = None,
                           pki_dir: Path | None = None, plan_dir: Path | None = None,
                           workspace: Path | None = None) -> FxProcess:
        """`fx collaborator start`; ``plan_dir``/``workspace`` stand in for another host's."""
        extra = ("--workspace", workspace) if workspace is not None else ()
        process = self.registry.start(
            "collaborator", "start", "-n", name, "-p", plan_dir or self.plan_dir,
            "--pki-dir", pki_dir or self.pki_dir, "--aggregator", f"127.0.0.1:{self.port}",
            *extra, name=label or name, cwd=self.plan_dir,
        )
        self.collaborators[label or name] = process
        return process

    def status(self) -> dict[str, Any]:
        """`fx aggregator status --json` of this federation's workspace."""
        result = run_fx("aggregator", "status", "-p", self.plan_dir, "--workspace",
                        self.workspace, "--json", cwd=self.plan_dir, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        status: dict[str, Any] = json.loads(result.stdout)
        return status

    def wait_status(self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float,
                    what: str) -> dict[str, Any]:
        """Poll the status command until ``predicate`` holds (each poll is a process run, which
        paces the loop; the states waited for are stable, not races)."""
        end = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < end:
            last = self.status()
            if predicate(last):
                return last
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what}; last status: "
                             f"{json.dumps(last, indent=1)}\n{self.registry.report()}")


def outputs_dir(workspace: Path) -> Path:
    return workspace / "outputs"


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def assert_same_weights(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert np.array_equal(a[name], b[name]), (
            f"{name}: max |diff| {np.max(np.abs(a[name].astype(float) - b[name])):.3g}")
