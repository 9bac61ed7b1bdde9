"""Whole federations in one process: Aggregator and Collaborators in threads, in-memory port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from openfl_like.core.errors import (
    FederationError,
    NotFoundError,
    PermissionDeniedError,
    PlanMismatchError,
    ProtocolError,
)
from openfl_like.core.messages import (
    AGGREGATED_TAG,
    NamedTensor,
    PollStatus,
    ResultKey,
    TaskResult,
)
from openfl_like.federation import Aggregator
from openfl_like.plan import plan_digest, plan_fingerprint
from tests.unit.federation.harness import (
    FakeRunner,
    InMemoryPort,
    declare_all,
    initial_weights,
    make_plan,
    run_federation,
)


def _agg(tmp_path: Path, plan, **kwargs) -> Aggregator:  # type: ignore[no-untyped-def]
    kwargs.setdefault("initial_weights", initial_weights())
    agg = Aggregator(plan, state_dir=tmp_path / "state", output_dir=tmp_path / "out", **kwargs)
    return declare_all(agg, plan)


def _train_result(name: str, round_number: int, data_size: int = 10) -> TaskResult:
    return TaskResult(ResultKey(name, round_number, "train"), data_size, {"loss": 1.0})


def _stream(weights: dict[str, np.ndarray]):  # type: ignore[no-untyped-def]
    return iter([NamedTensor(n, a) for n, a in weights.items()])


def _expected_after_rounds(rounds: int, shards: tuple[int, ...] = (0, 1, 2)) -> dict:
    """FedAvg of FakeRunner by hand: float64 weighted sums in collaborator order, cast back."""
    model = initial_weights()
    for _ in range(rounds):
        locals_ = []
        for shard in shards:
            runner = FakeRunner(shard)
            runner.set_weights(model)
            runner.train(epochs=1, batch_size=8)
            locals_.append((runner.data_size, runner.get_weights()))
        total = float(sum(n for n, _ in locals_))
        new = {}
        for name, ref in model.items():
            acc = np.zeros(ref.shape, np.float64)
            for n, w in locals_:
                acc += float(n) * w[name].astype(np.float64)
            acc /= total
            new[name] = np.rint(acc).astype(ref.dtype) if ref.dtype.kind == "i" else \
                acc.astype(ref.dtype)
        model = new
    return model


def test_federation_completes_with_exact_fedavg_and_outputs(tmp_path: Path) -> None:
    # Prepare
    plan = make_plan(tmp_path, {"aggregator": {"write_plot": True}})
    agg = _agg(tmp_path, plan)
    # Execute
    summaries = run_federation(plan, agg)
    # Assert
    final = agg.weights()
    expected = _expected_after_rounds(3)
    for name in expected:
        assert final[name].dtype == expected[name].dtype
        assert np.array_equal(final[name], expected[name]), name
    assert int(final["steps"]) == 3
    assert all(s.rounds_trained == 3 for s in summaries.values())
    history = agg.history
    assert [r["round"] for r in history] == [0, 1, 2, 3]
    assert history[-1]["kind"] == "final_validation"
    assert set(history[0]["metrics"]) == {"aggregated_model_validation", "train",
                                          "locally_tuned_model_validation"}
    out = tmp_path / "out"
    for name in ("metrics.csv", "metrics.json", "final_model.npz", "best_model.npz",
                 "metrics.png"):
        assert (out / name).is_file(), name
    with np.load(out / "final_model.npz") as saved:
        assert np.array_equal(saved["dense/kernel"], final["dense/kernel"])
    assert len(json.loads((out / "metrics.json").read_text())) == 4
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("round,kind,closed_by")
    status = agg.status()
    assert status["phase"] == "done" and status["waiting_for"] == []


def test_best_model_follows_plan_metric(tmp_path: Path) -> None:
    # FakeRunner's loss falls towards 3.0 every round, so with direction max on loss the initial
    # model (round 0) stays best; with min, the last one wins.
    plan = make_plan(tmp_path, {"aggregator": {"best_model": {"metric": "loss",
                                                              "direction": "max"}}})
    agg = _agg(tmp_path, plan)
    run_federation(plan, agg)
    assert agg.status()["best"]["round"] == 0
    assert np.array_equal(agg.best_weights()["dense/kernel"], initial_weights()["dense/kernel"])


def test_duplicate_result_is_acknowledged_and_not_counted(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    agg = _agg(tmp_path, plan)
    update = {k: v + 1 if v.dtype.kind == "f" else v for k, v in initial_weights().items()}
    first = agg.send_local_task_results(_train_result("col1", 0), _stream(update))
    again = agg.send_local_task_results(_train_result("col1", 0), _stream(update))
    assert first.accepted and not first.duplicate
    assert again.accepted and again.duplicate
    assert agg.status()["results_in"] == 1


def test_bad_updates_are_refused_and_never_touch_the_model(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    agg = _agg(tmp_path, plan)
    before = agg.weights()
    good = initial_weights()
    bad_cases = {
        "NaN": {**good, "dense/bias": np.array([0, np.nan, 0], np.float32)},
        "dtype": {**good, "dense/bias": np.zeros(3, np.float64)},
        "shape": {**good, "dense/bias": np.zeros(4, np.float32)},
        "unknown": {**good, "other": np.zeros(1, np.float32)},
        "missing": {k: v for k, v in good.items() if k != "steps"},
    }
    for reason, tensors in bad_cases.items():
        with pytest.raises(ProtocolError):
            agg.send_local_task_results(_train_result("col1", 0), _stream(tensors))
        assert agg.status()["results_in"] == 0, reason
    staging = tmp_path / "state" / "staging"  # (small updates are staged in memory)
    assert not staging.exists() or list(staging.iterdir()) == []
    for name, array in agg.weights().items():
        assert np.array_equal(array, before[name])
    # After the refusals the same collaborator can still deliver a good update.
    assert agg.send_local_task_results(_train_result("col1", 0), _stream(good)).accepted


def test_results_for_other_rounds_and_tasks(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    agg = _agg(tmp_path, plan)
    with pytest.raises(ProtocolError, match="has not started"):
        agg.send_local_task_results(_train_result("col1", 1), _stream(initial_weights()))
    with pytest.raises(ProtocolError, match="not assigned"):
        agg.send_local_task_results(
            TaskResult(ResultKey("col1", 0, "bogus"), 1, {}), iter(()))
    with pytest.raises(ProtocolError, match="carries no tensors"):
        agg.send_local_task_results(
            TaskResult(ResultKey("col1", 0, "aggregated_model_validation"), 1, {}),
            _stream(initial_weights()))
    with pytest.raises(PermissionDeniedError):
        agg.send_local_task_results(_train_result("mallory", 0), _stream(initial_weights()))


def test_fetching_tensors_only_global_and_current(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    agg = _agg(tmp_path, plan)
    tensors = list(agg.get_aggregated_tensors("col1", 0, [], (AGGREGATED_TAG,)))
    assert {t.name for t in tensors} == set(initial_weights())
    assert all(t.tags == (AGGREGATED_TAG,) and not t.array.flags.writeable for t in tensors)
    # Another collaborator's update cannot be fetched, whatever the tags say.
    agg.send_local_task_results(_train_result("col2", 0), _stream(initial_weights()))
    for tags in (("trained",), ("col2",), (AGGREGATED_TAG, "col2")):
        with pytest.raises(PermissionDeniedError):
            agg.get_aggregated_tensors("col1", 0, [], tags)
    with pytest.raises(NotFoundError):
        agg.get_aggregated_tensors("col1", 0, ["col2/dense/kernel"], ())
    with pytest.raises(NotFoundError, match="round 1"):
        agg.get_aggregated_tensors("col1", 1, [], ())
    with pytest.raises(PermissionDeniedError):
        agg.get_aggregated_tensors("mallory", 0, [], ())
    assert not agg.is_authorized("mallory") and agg.is_authorized("col1")


def test_handshake_names_the_differing_setting(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    other = make_plan(tmp_path / "other", {"aggregator": {"rounds_to_train": 5}})
    agg = _agg(tmp_path, plan)
    reply = agg.handshake("col2", plan_digest(plan), plan_fingerprint(plan))
    assert reply.round_number == 0 and reply.rounds_total == 3 and not reply.done
    with pytest.raises(PlanMismatchError, match=r"aggregator.rounds_to_train: 3 here, 5 at "
                                                r"collaborator col2"):
        agg.handshake("col2", plan_digest(other), plan_fingerprint(other))


def test_handshake_names_settings_not_the_derived_federation_ids(tmp_path: Path) -> None:
    # Prepare: another setting also derives another federation id
    plan = make_plan(tmp_path)
    other = make_plan(tmp_path / "other", {"aggregator": {"rounds_to_train": 5}})
    assert plan.federation_uuid != other.federation_uuid
    agg = _agg(tmp_path, plan)
    # Execute
    with pytest.raises(PlanMismatchError) as caught:
        agg.handshake("col2", plan_digest(other), plan_fingerprint(other))
    # Assert: the setting, and not the ids that follow from it
    assert "aggregator.rounds_to_train: 3 here, 5 at collaborator col2" in caught.value.message
    assert "federation_uuid" not in caught.value.message
    # only the id differs (an explicit federation_uuid): then the id is what is named
    fingerprint = dict(plan_fingerprint(plan))
    fingerprint["federation.federation_uuid"] = '"another"'
    with pytest.raises(PlanMismatchError, match=r"federation\.federation_uuid"):
        agg.handshake("col2", "other-digest", fingerprint)


def test_long_poll_wakes_parked_collaborators_without_waiting_out_the_poll(tmp_path: Path
                                                                           ) -> None:
    plan = make_plan(tmp_path, cols=("col1", "col2"))
    agg = _agg(tmp_path, plan)
    port = InMemoryPort(agg, "col1", wait_seconds=20)
    runner = FakeRunner(0)
    # col1 finishes its round and parks in get_tasks.
    tasks = agg.get_tasks("col1", 0).tasks
    for task in tasks:
        out = runner.train(epochs=1, batch_size=1) if task.name == "train" else \
            runner.validate(batch_size=1)
        port.send_local_task_results(
            TaskResult(ResultKey("col1", 0, task.name), out.data_size, out.metrics),
            runner.get_weights() if task.name == "train" else {})
    woke: list[tuple[float, PollStatus, int]] = []

    def park() -> None:
        reply = port.get_tasks()
        woke.append((time.perf_counter(), reply.status, reply.round_number))

    thread = threading.Thread(target=park)
    thread.start()
    while agg.status()["collaborators"]["col1"]["active"] is not True or \
            not agg._live.round.parked.get("col1"):
        threading.Event().wait(0.001)
    # col2 delivers; the round closes; col1 must get round 1 at once, not after 20 s.
    runner2 = FakeRunner(1)
    for task in agg.get_tasks("col2", 0).tasks:
        out = runner2.train(epochs=1, batch_size=1) if task.name == "train" else \
            runner2.validate(batch_size=1)
        closed_at = time.perf_counter()
        InMemoryPort(agg, "col2").send_local_task_results(
            TaskResult(ResultKey("col2", 0, task.name), out.data_size, out.metrics),
            runner2.get_weights() if task.name == "train" else {})
    thread.join(5)
    assert woke and woke[0][1] is PollStatus.WORK and woke[0][2] == 1
    assert woke[0][0] - closed_at < 0.5


def test_deadline_closes_round_with_quorum(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"stragglers": {"round_deadline_seconds": 0.3,
                                               "min_collaborators": 2}})
    agg = _agg(tmp_path, plan)
    start = time.monotonic()
    run_federation(plan, agg, names=["col1", "col2"])  # col3 never shows up
    elapsed = time.monotonic() - start
    history = agg.history
    assert [r["closed_by"] for r in history] == ["deadline"] * 4
    assert all(r["missing"] == ["col3"] for r in history)
    assert elapsed < 10
    expected = _expected_after_rounds(3, shards=(0, 1))
    assert np.array_equal(agg.weights()["dense/kernel"], expected["dense/kernel"])


def test_deadline_without_quorum_fails_when_plan_says_fail(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"stragglers": {"round_deadline_seconds": 0.2,
                                               "min_collaborators": 2,
                                               "on_deadline_without_quorum": "fail"}})
    agg = _agg(tmp_path, plan)
    # The collaborator is told, and ends with the reason as an error (a non-zero exit).
    with pytest.raises(FederationError, match="federation failed: round 0: deadline"):
        run_federation(plan, agg, names=["col1"])
    assert "deadline of 0.2 s passed with 1 of the 2" in agg.failed
    assert agg.status()["phase"] == "failed"


def test_deadline_without_quorum_waits_then_closes_when_quorum_arrives(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"stragglers": {"round_deadline_seconds": 0.1,
                                               "min_collaborators": 2}})
    agg = _agg(tmp_path, plan)
    agg.send_local_task_results(_train_result("col1", 0), _stream(initial_weights()))
    assert not agg.wait_until_done(0.3)  # past the deadline, only one of two: still open
    assert agg.round_number == 0 and not agg.failed
    agg.send_local_task_results(_train_result("col2", 0), _stream(initial_weights()))
    assert agg.wait_for_round(1)
    assert agg.history[0]["closed_by"] == "deadline"


def test_resume_after_crash_gives_the_same_final_weights(tmp_path: Path) -> None:
    # Reference: an uninterrupted run.
    plan = make_plan(tmp_path)
    reference = _agg(tmp_path / "ref", plan)
    run_federation(plan, reference)
    # Crashed run: round 0 done, round 1 half-delivered (results in a different order), then
    # the aggregator object is dropped without any shutdown and rebuilt from the state folder.
    crashed = _agg(tmp_path / "crash", plan)
    runners = {n: FakeRunner(i) for i, n in enumerate(plan.collaborators)}

    def deliver(agg: Aggregator, name: str, r: int, tasks: tuple[str, ...]) -> None:
        runner = runners[name]
        runner.set_weights(InMemoryPort(agg, name).get_aggregated_tensors(r, []))
        for task in tasks:
            out = runner.train(epochs=1, batch_size=8) if task == "train" else \
                runner.validate(batch_size=8)
            InMemoryPort(agg, name).send_local_task_results(
                TaskResult(ResultKey(name, r, task), out.data_size, out.metrics),
                runner.get_weights() if task == "train" else {})

    everything = ("aggregated_model_validation", "train", "locally_tuned_model_validation")
    for name in ("col3", "col1", "col2"):
        deliver(crashed, name, 0, everything)
    assert crashed.wait_for_round(1)
    deliver(crashed, "col2", 1, everything)
    deliver(crashed, "col3", 1, ("aggregated_model_validation", "train"))
    crashed.stop()  # (a crash: nothing is flushed; stop only ends the closer thread)
    del crashed
    resumed = _agg(tmp_path / "crash", plan, initial_weights=None)
    assert resumed.round_number == 1
    assert resumed.status()["results_in"] == 5
    # A retry of an already applied result is recognised.
    ack = resumed.send_local_task_results(_train_result("col3", 1), _stream(initial_weights()))
    assert ack.duplicate
    summaries = run_federation(plan, resumed)
    assert summaries["col1"].rounds_trained == 2  # rounds 1 and 2; round 0 was done before
    for name, array in reference.weights().items():
        assert np.array_equal(resumed.weights()[name], array), name
    assert [r["round"] for r in resumed.history] == [0, 1, 2, 3]


def test_resume_refuses_state_of_another_plan(tmp_path: Path) -> None:
    _agg(tmp_path, make_plan(tmp_path))
    other = make_plan(tmp_path / "o", {"aggregator": {"rounds_to_train": 7}})
    with pytest.raises(FederationError, match="another plan"):
        _agg(tmp_path, other)
    with pytest.raises(FederationError, match="no saved state"):
        Aggregator(other, state_dir=tmp_path / "empty", initial_weights=None)


def test_torn_journal_tail_is_dropped_on_resume(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    agg = _agg(tmp_path, plan)
    agg.send_local_task_results(_train_result("col1", 0), _stream(initial_weights()))
    del agg
    journal = tmp_path / "state" / "journal-0.jsonl"
    with journal.open("ab") as handle:
        handle.write(b'deadbeef {"key": {"collab')  # a write cut by the crash
    resumed = _agg(tmp_path, plan, initial_weights=None)
    assert resumed.status()["results_in"] == 1
    assert journal.read_bytes().endswith(b"\n")


@pytest.mark.parametrize("aggregation", [{"name": "median"}, {"name": "trimmed_mean",
                                                              "trim_fraction": 0.2},
                                         {"name": "fedopt", "optimizer": "yogi", "lr": 0.5}])
def test_other_aggregations_run_a_federation(tmp_path: Path, aggregation: dict) -> None:
    plan = make_plan(tmp_path, {"aggregation": aggregation})
    agg = _agg(tmp_path, plan)
    run_federation(plan, agg)
    assert agg.done and not agg.failed
    assert np.isfinite(agg.weights()["dense/kernel"]).all()
    if aggregation["name"] == "median":  # median of the three local models = col2's
        assert np.array_equal(agg.weights()["dense/bias"],
                              _median_bias(rounds=3))


def _median_bias(rounds: int) -> np.ndarray:
    bias = np.zeros(3, np.float32)
    for _ in range(rounds):
        bias = (bias / 2 + np.float32(2)).astype(np.float32)
    return bias


def test_async_fedbuff_mode_runs_and_weights_staleness(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"mode": {"name": "async", "buffer_size": 2,
                                         "staleness": "polynomial"},
                                "aggregator": {"rounds_to_train": 4}})
    agg = _agg(tmp_path, plan)
    run_federation(plan, agg)
    assert agg.done and not agg.failed
    history = agg.history
    assert history[-1]["kind"] == "final_validation"
    assert sum(1 for r in history if r["kind"] == "train") == 4
    assert np.isfinite(agg.weights()["dense/kernel"]).all()


def test_async_stale_update_is_down_weighted(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"mode": {"name": "async", "buffer_size": 1,
                                         "staleness": "constant"},
                                "aggregator": {"rounds_to_train": 4}},
                     cols=("col1", "col2"))
    agg = _agg(tmp_path, plan)
    w0 = initial_weights()
    plus = {k: np.asarray(v + 1, dtype=v.dtype) for k, v in w0.items()}
    agg.send_local_task_results(_train_result("col1", 0, 10), _stream(plus))  # closes v0 -> v1
    assert agg.wait_for_round(1)
    # col2 trained on version 0: its delta (+1) is applied to version 1 (constant weight).
    agg.send_local_task_results(_train_result("col2", 0, 10), _stream(plus))
    assert agg.wait_for_round(2)
    np.testing.assert_allclose(agg.weights()["dense/bias"], np.full(3, 2.0))


def test_fedavg_model_is_derived_from_kept_updates_and_recomputed_on_resume(
        tmp_path: Path) -> None:
    # Prepare: a finished sync FedAvg federation writes no model file after round 0.
    plan = make_plan(tmp_path)
    agg = _agg(tmp_path, plan, inline_max_bytes=0)  # (file-staged updates)
    run_federation(plan, agg)
    state_dir = tmp_path / "state"
    raw = json.loads((state_dir / "state.json").read_text())
    # Assert: the final model is named by the three staged updates it was computed from.
    parts = raw["derived_models"]["3"]
    assert sorted(p["collaborator"] for p in parts) == ["col1", "col2", "col3"]
    assert all((state_dir / "staging" / p["staged"]).is_file() for p in parts)
    # Staged updates have no manifest file: their layout is in the snapshot (and was in the
    # journal line that applied them).
    assert not list((state_dir / "staging").glob("*.json"))
    assert all(set(p["layout"]) == set(initial_weights()) for p in parts)
    assert "3" not in raw["model_files"]
    assert not (state_dir / "models" / "model-r3.bin").exists()
    # Execute: a new aggregator on the same state recomputes exactly the same bits.
    resumed = _agg(tmp_path, plan, initial_weights=None)
    for name, array in agg.weights().items():
        assert np.array_equal(resumed.weights()[name], array), name
        assert resumed.weights()[name].dtype == array.dtype


def test_fedopt_still_writes_its_model_and_optimizer_files(tmp_path: Path) -> None:
    plan = make_plan(tmp_path, {"aggregation": {"name": "fedopt"}})
    agg = _agg(tmp_path, plan)
    run_federation(plan, agg)
    raw = json.loads((tmp_path / "state" / "state.json").read_text())
    assert raw["model_files"]["3"] == "model-r3.bin" and raw["derived_models"] == {}
    assert raw["optimizer_file"] == "opt-r3.bin"
    resumed = _agg(tmp_path, plan, initial_weights=None)
    for name, array in agg.weights().items():
        assert np.array_equal(resumed.weights()[name], array), name


def test_read_only_initial_weights_are_kept_and_writable_ones_copied(tmp_path: Path) -> None:
    # Prepare: one tensor handed over read-only (as the noop runner does), the others writable
    weights = initial_weights()
    frozen_name = sorted(weights)[0]
    frozen = np.ascontiguousarray(weights[frozen_name])
    frozen.flags.writeable = False
    weights[frozen_name] = frozen
    # Act
    agg = _agg(tmp_path, make_plan(tmp_path), initial_weights=weights)
    model = agg.weights()
    # Assert: no second copy of the read-only tensor; the writable ones are the aggregator's own
    assert np.shares_memory(model[frozen_name], frozen)
    for name, array in weights.items():
        if name != frozen_name:
            assert not np.shares_memory(model[name], array)
            before = model[name].copy()
            array[...] = 0
            np.testing.assert_array_equal(model[name], before)


def test_staging_lets_go_of_each_received_tensor_before_the_next_arrives(tmp_path: Path) -> None:
    # Prepare: a stream that checks, when asked for tensor k+1, that tensor k was released
    import weakref

    plan = make_plan(tmp_path)
    agg = _agg(tmp_path, plan)
    update = {k: v + 1 if v.dtype.kind == "f" else v.copy() for k, v in initial_weights().items()}
    still_alive: list[str] = []

    def stream():  # type: ignore[no-untyped-def]
        previous: weakref.ref[np.ndarray] | None = None
        previous_name = ""
        for name, array in update.items():
            fresh = array.copy()
            update[name] = None  # type: ignore[assignment]  # the stream holds the only copy
            if previous is not None and previous() is not None:
                still_alive.append(previous_name)
            previous, previous_name = weakref.ref(fresh), name
            yield NamedTensor(name, fresh)
            del fresh

    # Act
    ack = agg.send_local_task_results(_train_result("col1", 0), stream())
    # Assert
    assert ack.accepted
    assert still_alive == []



def test_after_upload_hook_runs_after_each_staged_update_before_the_close(tmp_path: Path
                                                                          ) -> None:
    # Prepare: the hook (the app's heap release) sees each train update staged, never a
    # validation result, and runs before the round that update completes is closed.
    plan = make_plan(tmp_path)
    seen: list[tuple[int, int]] = []
    agg: Aggregator

    def hook(nbytes: int) -> None:
        assert nbytes == sum(a.nbytes for a in agg.weights().values())
        trains = [r for r in agg._live.round.results if r.key.task_name == "train"]
        seen.append((agg._live.state.round_number, len(trains)))

    agg = _agg(tmp_path, plan, after_upload=hook, inline_max_bytes=0)
    # Execute
    run_federation(plan, agg)
    # Assert: one call per train update (3 collaborators x 3 rounds), each in the open round
    assert len(seen) == 9
    assert sorted({r for r, _ in seen}) == [0, 1, 2]
    assert all(trains < 3 for _, trains in seen)  # its own update not applied yet


def test_an_upload_longer_than_the_liveness_timeout_keeps_its_sender_in_the_round(
        tmp_path: Path) -> None:
    # Prepare: liveness 0.3 s; col1 and col2 deliver; col3's upload streams in slowly (1 s)
    plan = make_plan(tmp_path, {"stragglers": {"liveness_timeout_seconds": 0.3,
                                               "round_deadline_seconds": 30}})
    agg = _agg(tmp_path, plan, inline_max_bytes=0)
    everything = ("aggregated_model_validation", "locally_tuned_model_validation")

    def slow() -> Iterator[NamedTensor]:
        for name, array in initial_weights().items():
            time.sleep(0.35)  # longer than the liveness timeout, before each tensor
            yield NamedTensor(name, array, 0)

    for name in ("col1", "col2", "col3"):
        extras = tuple(TaskResult(ResultKey(name, 0, t), 10, {"a": 1.0}) for t in everything)
        main = TaskResult(ResultKey(name, 0, "train"), 10, {"loss": 1.0}, also=extras)
        # Execute
        tensors = slow() if name == "col3" else _stream(initial_weights())
        assert agg.send_local_task_results(main, tensors).accepted
    # Assert: col3 was never dropped though no call started for > 1 s; its update counted
    assert agg.wait_for_round(1)
    record = agg.history[0]
    assert "col3" in record["collaborators"], record
    assert "col3" not in record.get("dropped", {}), record
    agg.stop()
