"""A real director (``start_director``) and a real envoy (``start_envoy``) with metrics ports:
/metrics shows the envoy registered on both sides, calls refused by the director's checks are
counted, and /readyz follows the director's gRPC health (200, then 503 once it stops)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from openfl_like.app.director import RunningDirector, start_director
from openfl_like.app.envoy import RunningEnvoy, start_envoy
from openfl_like.app.workspace import ensure_director_pki
from openfl_like.core.errors import PermissionDeniedError
from openfl_like.pki import PkiStore
from openfl_like.plan.director_config import load_director_config
from openfl_like.plan.envoy_config import load_envoy_config
from openfl_like.transport.credentials import TlsFiles
from openfl_like.transport.director_client import DirectorClient
from openfl_like.transport.retry import RetryPolicy

CONTRACT = {"features": [64], "dtype": "float32", "label": "classes",
            "classes": [str(i) for i in range(10)]}
FEDERATION = "ops_lab"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def value(text: str, sample: str) -> float | None:
    """The value of one sample line (``name`` or ``name{labels}``) of an exposition."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def lab(tmp_path: Path):
    pki = PkiStore(tmp_path / "pki")
    ensure_director_pki(pki, director="director", envoys=["env_a"], experimenters=["alice"])
    (tmp_path / "director.yaml").write_text(yaml.safe_dump({"director": {
        "name": "director", "host": "127.0.0.1", "port": 0, "federation": FEDERATION,
        "workspace": "workspace/director", "heartbeat_seconds": 1}}))
    director = start_director(load_director_config(tmp_path / "director.yaml"), pki=pki,
                              port=0, metrics_port=0)
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(
        {"loader": "digits", "params": {"shard": 0, "num_shards": 3}}))
    (tmp_path / "envoy.yaml").write_text(yaml.safe_dump({
        "envoy": {"director": {"host": "127.0.0.1", "port": director.port, "name": "director",
                               "federation": FEDERATION},
                  "workspace": "workspace/{name}"},
        "data": "data.yaml", "contract": CONTRACT}))
    envoys: list[RunningEnvoy] = []
    try:
        yield director, envoys, tmp_path, pki
    finally:
        for envoy in envoys:
            envoy.stop(30)
        director.stop()


def test_director_and_envoy_metrics_and_readiness(lab) -> None:
    director, envoys, root, pki = lab
    assert isinstance(director, RunningDirector) and director.ops is not None
    d_url = director.ops.url
    assert get(d_url + "/readyz") == (200, "ready\n")
    assert get(d_url + "/healthz")[0] == 200
    _, text = get(d_url + "/metrics")
    assert value(text, "openfl_director_envoys_registered") == 0
    assert value(text, 'openfl_director_experiments{state="running"}') == 0

    # Execute: a real envoy registers (its own metrics port), its long-poll parks
    config = load_envoy_config(root / "envoy.yaml", "env_a")
    envoy = start_envoy(config, "env_a", pki_dir=pki.root, metrics_port=0)
    envoys.append(envoy)
    assert envoy.ops is not None

    # Assert: the director sees it registered, online, parked; bytes were counted
    def director_sees_it() -> bool:
        _, now = get(d_url + "/metrics")
        return (value(now, "openfl_director_envoys_registered") == 1
                and value(now, "openfl_director_envoys_online") == 1
                and value(now, "openfl_director_parked_polls") == 1)

    assert eventually(director_sees_it), get(d_url + "/metrics")[1]
    _, text = get(d_url + "/metrics")
    assert (value(text, "openfl_director_received_bytes_total") or 0) > 0
    assert (value(text, "openfl_director_sent_bytes_total") or 0) > 0
    assert value(text, "openfl_director_ready") == 1
    assert value(text, "openfl_director_events_stored") == 0
    # ... and the envoy sees itself registered, the director reachable, ready
    e_url = envoy.ops.url
    assert eventually(lambda: get(e_url + "/readyz")[0] == 200)
    _, mine = get(e_url + "/metrics")
    assert value(mine, "openfl_envoy_registered") == 1
    assert value(mine, "openfl_envoy_director_reachable") == 1
    assert value(mine, "openfl_envoy_experiments_running") == 0

    # Execute: an envoy certificate calls an experimenter RPC
    client = DirectorClient(host="127.0.0.1", port=director.port, name="env_a",
                            director_name="director", federation_uuid=FEDERATION,
                            tls_files=TlsFiles.for_participant(pki, "env_a"),
                            retry=RetryPolicy(total_seconds=1.0))
    with client, pytest.raises(PermissionDeniedError):
        client.list_experiments()

    # Assert: counted as refused, with the check that refused it
    _, text = get(d_url + "/metrics")
    refused = re.findall(r'^openfl_director_calls_refused_total\{([^}]*)\} (\S+)$', text,
                         re.MULTILINE)
    assert any('method="GetExperimentsList"' in labels and 'code="PERMISSION_DENIED"' in labels
               and float(count) == 1 for labels, count in refused), refused

    # Execute: the envoy stops, then the director (its ops port kept to read /readyz)
    envoy.stop(30)
    envoys.clear()
    assert envoy.ops is not None and get_fails(e_url + "/healthz")  # closed with the envoy
    director.stop(keep_ops=True)

    # Assert
    try:
        assert get(d_url + "/readyz") == (503, "not ready\n")
        assert get(d_url + "/healthz")[0] == 200
        _, text = get(d_url + "/metrics")
        assert value(text, "openfl_director_ready") == 0
        assert "openfl_director_envoys_registered" not in text  # registry closed: no snapshot
    finally:
        director.close_ops()
    assert get_fails(d_url + "/healthz")


def get_fails(url: str) -> bool:
    try:
        get(url)
    except (urllib.error.URLError, ConnectionError):
        return True
    return False
