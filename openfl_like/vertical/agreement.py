"""What the two parties agree on before (and while) training, over the communicator.

1. :func:`check_same_samples`: the follower sends a fingerprint (sha256 of its training ids, of
   its test ids, and of the plan settings both must share); the leader compares it with its own
   and answers with a verdict, so a mismatch is one clear error at *both* parties before a single
   step is trained on misaligned rows.
2. :func:`agree_checkpoint`: the follower sends the versions of its valid checkpoints; the
   leader picks the newest one both hold (0: a fresh start) and sends it
   (``send_ckpt_version``); both restore it.

Both run at step 0 of a fresh communicator, under tensor names that training never uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Protocol

import numpy as np

from openfl_like.core.errors import DataError, PlanMismatchError
from openfl_like.core.vertical import PartyRole, ReaderState
from openfl_like.plan.vertical_config import VerticalPlan
from openfl_like.vertical.party_data import PartyData, ids_digest

SAMPLES_TENSOR = "sample_check"
VERDICT_TENSOR = "sample_check_verdict"
VERSIONS_TENSOR = "ckpt_versions"
_PARTS = ("training sample ids", "test sample ids", "plan settings (model, checkpoint steps)")


class PartyComm(Protocol):
    """The part of ``openfl_like.vertical.Communicator`` a party's training uses (typed here so
    the logic is tested over an in-memory pair)."""

    @property
    def step(self) -> int: ...

    def add_step(self) -> object: ...

    def set_step(self, step: int) -> object: ...

    def send(self, name: str, array: np.ndarray, timeout_ms: int | None = None) -> None: ...

    def recv(self, name: str, dtype: object = None, timeout_ms: int | None = None
             ) -> np.ndarray: ...

    def send_ckpt_version(self, version: int) -> None: ...

    def recv_ckpt_version(self, timeout_ms: int | None = None) -> int: ...

    def send_reader_state(self, name: str, block_id: int, sample_index: int) -> None: ...

    def recv_reader_state(self, name: str, timeout_ms: int | None = None
                          ) -> ReaderState | None: ...

    def terminate_reader(self, name: str) -> None: ...


def settings_digest(plan: VerticalPlan) -> bytes:
    """What both parties must share beyond the session id: the model and training numbers,
    the checkpoint cadence (versions must line up) and the data split settings. Not the epoch
    count: only the leader counts epochs (the follower reads until the leader ends the reader)."""
    model = {k: v for k, v in asdict(plan.model).items() if k != "epochs"}
    shared = {"model": model, "every_steps": plan.checkpoint.every_steps,
              "data": {"source": plan.data.source, "seed": plan.data.seed,
                       "test_fraction": plan.data.test_fraction}}
    return hashlib.sha256(json.dumps(shared, sort_keys=True).encode()).digest()


def fingerprint(plan: VerticalPlan, data: PartyData) -> bytes:
    return ids_digest(data.train.ids) + ids_digest(data.test.ids) + settings_digest(plan)


def _mismatch(part: int, *, mine: bytes, theirs: bytes, peer: str) -> Exception:
    what = _PARTS[part]
    detail = f"(sha256 {mine.hex()[:12]}... here, {theirs.hex()[:12]}... at {peer})" \
        if mine else f"(see {peer}'s log)"
    if part == 2:
        return PlanMismatchError(f"the {what} differ from {peer}'s {detail}: both parties "
                                 "must run the same plan")
    return DataError(f"the {what} differ from {peer}'s {detail}: both parties must hold the "
                     "same samples in the same order")


def check_same_samples(comm: PartyComm, role: PartyRole, mine: bytes, *, peer: str) -> None:
    """Raise at both parties unless they hold the same samples in the same order and share the
    plan settings (module docstring)."""
    if role is PartyRole.FOLLOWER:
        comm.send(SAMPLES_TENSOR, np.frombuffer(mine, dtype=np.uint8).copy())
        verdict = int(comm.recv(VERDICT_TENSOR, dtype=np.int64)[0])
        if verdict:
            raise _mismatch(verdict - 1, mine=b"", theirs=b"", peer=peer)
        return
    theirs = comm.recv(SAMPLES_TENSOR, dtype=np.uint8).tobytes()
    bad = 0
    if len(theirs) != len(mine):
        bad = 3
    else:
        for part in range(3):
            if mine[part * 32:(part + 1) * 32] != theirs[part * 32:(part + 1) * 32]:
                bad = part + 1
                break
    comm.send(VERDICT_TENSOR, np.array([bad], dtype=np.int64))
    if bad:
        part = bad - 1
        raise _mismatch(part, mine=mine[part * 32:(part + 1) * 32],
                        theirs=theirs[part * 32:(part + 1) * 32], peer=peer)


def newest_common(mine: Sequence[int], theirs: Sequence[int]) -> int:
    """The newest version both hold; 0 (a fresh start) when there is none."""
    return max(set(mine) & set(theirs), default=0)


def agree_checkpoint(comm: PartyComm, role: PartyRole, valid: Sequence[int], *,
                     peer: str) -> int:
    """The version both restore (0: none); the leader decides (module docstring)."""
    if role is PartyRole.FOLLOWER:
        # A leading 0 keeps the tensor non-empty and stands for "start fresh".
        comm.send(VERSIONS_TENSOR, np.array([0, *valid], dtype=np.int64))
        version = int(comm.recv_ckpt_version())
        if version and version not in valid:
            raise DataError(f"{peer} chose checkpoint {version}, which this party does not "
                            f"hold (it has {list(valid) or 'none'})")
        return version
    theirs = [int(v) for v in comm.recv(VERSIONS_TENSOR, dtype=np.int64).tolist()]
    version = newest_common(valid, theirs)
    comm.send_ckpt_version(version)
    return version
