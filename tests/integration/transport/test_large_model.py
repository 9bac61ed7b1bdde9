"""A 256 MiB model streamed both ways over mutual TLS, dtypes kept, in chunks."""

from __future__ import annotations

import time

import numpy as np
import pytest

from openfl_like.core.messages import ResultKey, TaskResult

MIB = 1024 * 1024


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_256_mib_model_both_ways(make_client, handler):
    # Prepare: 256 MiB in tensors of several dtypes, the largest well over one chunk
    rng = np.random.default_rng(0)
    model = {
        "big/f32": rng.standard_normal(48 * MIB // 4, dtype=np.float32).reshape(-1, 1024),
        "big/f64": rng.standard_normal(64 * MIB // 8),
        "mid/f16": rng.standard_normal(16 * MIB // 2).astype(np.float16),
        "mid/i64": np.arange(128 * MIB // 8, dtype=np.int64),
    }
    assert sum(a.nbytes for a in model.values()) == 256 * MIB
    handler.model = model
    client = make_client("col-a")

    # Execute
    started = time.perf_counter()
    got = client.get_aggregated_tensors(3, list(model))
    down = time.perf_counter() - started
    started = time.perf_counter()
    ack = client.send_local_task_results(
        TaskResult(ResultKey("col-a", 3, "train"), data_size=1),
        {k: t.array for k, t in got.items()},
    )
    up = time.perf_counter() - started

    # Assert
    assert ack.accepted
    received = handler.received[ResultKey("col-a", 3, "train")]
    for name, array in model.items():
        assert got[name].array.dtype == array.dtype and np.array_equal(got[name].array, array)
        assert received[name].dtype == array.dtype and np.array_equal(received[name], array)
    print(f"256 MiB down {256 / down:.0f} MiB/s, up {256 / up:.0f} MiB/s")
