"""The two ready examples, end to end: the user's own .keras model on each site's own files.

`make examples-data`'s scripts write the data and the initial model into a copy of the plan,
`fx plan run` federates it over mutual TLS (one process per participant, two sites), and the
exported final model, loaded afresh with Keras in another process, gives the accuracy the run
printed on the aggregator's held-out test data.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import FINAL_ACCURACY, PLANS, fx_env, run_fx

pytestmark = pytest.mark.e2e

_RELOAD = """
import sys
import numpy as np
import keras
from openfl_like.app.data import check_local_data

plan, model_path = sys.argv[1], sys.argv[2]
data = check_local_data(plan, f"{plan}/data/test.yaml").dataset
x = np.concatenate([data.x_train, data.x_valid]); y = np.concatenate([data.y_train, data.y_valid])
model = keras.saving.load_model(model_path)
print(float((model.predict(x, verbose=0).argmax(axis=1) == y).mean()))
"""


def _two_site_copy(name: str, dest: Path) -> Path:
    import shutil

    shutil.copytree(PLANS / name, dest, ignore=shutil.ignore_patterns(
        "workspace", "pki", "__pycache__", "*.csv", "model.keras", "images"))
    (dest / "cols.yaml").write_text(yaml.safe_dump({"collaborators": ["site_a", "site_b"]}))
    (dest / "data.yaml").write_text(yaml.safe_dump(
        {"site_a": "data/site_a.yaml", "site_b": "data/site_b.yaml"}, sort_keys=False))
    plan = yaml.safe_load((dest / "plan.yaml").read_text())
    plan.setdefault("stragglers", {})["min_collaborators"] = 2
    (dest / "plan.yaml").write_text(yaml.safe_dump(plan, sort_keys=False))
    return dest


@pytest.mark.timeout(420)
@pytest.mark.parametrize("example", ["keras_tabular", "keras_images"])
def test_an_example_federates_its_own_model_and_data(tmp_path: Path, example: str) -> None:
    # Prepare: the example's data and initial .keras model, written by its own script
    plan = _two_site_copy(example, tmp_path / example)
    made = subprocess.run([sys.executable, str(plan / "make_data.py"), "--out", str(plan)],
                          capture_output=True, text=True, env=fx_env(), timeout=180)
    assert made.returncode == 0, made.stderr[-3000:]
    assert (plan / "model.keras").is_file()
    # Execute
    result = run_fx("plan", "run", plan, "--pki-dir", tmp_path / "pki", "--port", "0",
                    cwd=tmp_path, timeout=300)
    # Assert: finished with a good held-out accuracy that the exported model reproduces
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    match = FINAL_ACCURACY.search(result.stdout)
    assert match is not None, result.stdout[-2000:]
    printed = float(match.group(1))
    assert printed >= 0.9, printed
    final = plan / "workspace" / "outputs" / "final_model.keras"
    reloaded = subprocess.run([sys.executable, "-c", _RELOAD, str(plan), str(final)],
                              capture_output=True, text=True, env=fx_env(), timeout=180)
    assert reloaded.returncode == 0, reloaded.stderr[-3000:]
    assert abs(float(reloaded.stdout.strip().splitlines()[-1]) - printed) < 5e-5
