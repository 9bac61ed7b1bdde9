"""`make demo-director`: a director, three envoys on digits shards, one experiment from the CLI.

Every party is its own `fx` process talking mutual TLS with certificates of the workspace PKI
(made here when missing): the director (`fx director start`), three envoys (`fx envoy start`),
and the experimenter `alice`, who submits the experiment with `fx experiment submit --follow`
(its metrics stream to this terminal), downloads the best model with `fx experiment model`, and
checks it on the digits held-out test split. Everything started here is stopped at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FX = [sys.executable, "-m", "openfl_like.cli.main"]
ENVOYS = ("env_one", "env_two", "env_three")
USER = "alice"
DIRECTOR = "127.0.0.1:50060"
CONNECT = ["--director", DIRECTOR, "-u", USER, "--federation", "digits_lab"]


def fx(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FX, *args], check=True, text=True, **kwargs)  # type: ignore[call-overload]


def start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen([*FX, *args], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_envoys(pki: str, deadline: float) -> None:
    from openfl_like.app.experimenter import Experimenter

    with Experimenter.connect(DIRECTOR, name=USER, pki_dir=pki, federation="digits_lab") as lab:
        while time.monotonic() < deadline:
            online = {e["name"] for e in lab.envoys() if e.get("online")}
            if online >= set(ENVOYS):
                print(f"envoys online: {', '.join(sorted(online))}", flush=True)
                return
            time.sleep(0.2)  # a one-off start-up wait of this script, not a protocol poll
    raise SystemExit("the envoys did not register within 60 s (see the logs in "
                     f"{HERE / 'workspace'})")


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
    pki = os.environ.get("FX_PKI_DIR", str(ROOT / "pki"))
    from openfl_like.app.workspace import ensure_director_pki
    from openfl_like.pki import PkiStore

    ensure_director_pki(PkiStore(Path(pki)), director="director", envoys=ENVOYS,
                        experimenters=(USER,))
    workspace = HERE / "workspace"
    shutil.rmtree(workspace, ignore_errors=True)  # a fresh registry: the demo starts clean
    (workspace / "logs").mkdir(parents=True)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start("director", "start", "-c", str(HERE / "director.yaml"),
                           "--pki-dir", pki, log=workspace / "logs" / "director.log"))
        for envoy in ENVOYS:
            procs.append(start("envoy", "start", "-n", envoy, "-c", str(HERE / "envoy.yaml"),
                               "--pki-dir", pki, log=workspace / "logs" / f"{envoy}.log"))
        wait_for_envoys(pki, time.monotonic() + 60)
        name = f"digits-{time.strftime('%H%M%S')}"
        fx("experiment", "submit", str(HERE / "experiment"), "--name", name, "--follow",
           *CONNECT, "--pki-dir", pki)
        model = workspace / f"{name}-best.keras"
        fx("experiment", "model", name, "--best", "-o", str(model), *CONNECT, "--pki-dir", pki)
        from openfl_like.data.digits import load_digits_test_set
        from openfl_like.runners.registry import load_native_model

        x, y = load_digits_test_set()
        keras_model = load_native_model("keras", model)
        accuracy = float((keras_model.predict(x, verbose=0).argmax(axis=1) == y).mean())
        print(f"final test accuracy: {accuracy:.4f} (best model, downloaded and reloaded, on "
              f"the {len(y)} held-out digits)")
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


if __name__ == "__main__":
    sys.exit(main())
