"""transport.refusals: a refusal is logged once per peer and reason with a count; a flood of
refused calls makes a handful of lines, in bounded memory."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest

from openfl_like.core.errors import AuthError, PermissionDeniedError
from openfl_like.transport import status
from openfl_like.transport.refusals import RefusalLog
from openfl_like.transport.status import abort_with, peer_label


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """pytest's caplog, attached to the project's logger itself: an earlier `fx` run in this
    process (CliRunner) may have turned its propagation off."""
    logger = logging.getLogger("openfl_like")
    saved = (logger.level, logger.propagate)
    logger.addHandler(caplog.handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.level, logger.propagate = saved

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def lines() -> Lines:
    return Lines()


def _log(lines: Lines, clock: Clock, **kwargs: int) -> RefusalLog:
    logger = logging.getLogger("test.refusals")
    logger.handlers[:] = [lines]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return RefusalLog(logger, clock=clock, **kwargs)


def test_first_refusal_logged_at_once_then_counted_once_a_minute(lines: Lines) -> None:
    # Prepare
    clock = Clock()
    refusals = _log(lines, clock)
    # Execute: 10000 refused calls over 3 minutes from one peer for one reason
    for call in range(10_000):
        clock.now = 1000.0 + call * 0.018
        refusals.refused("col9", "PERMISSION_DENIED", "'col9' is not a collaborator",
                         method="GetTasks")
    # Assert: the first line at once (WARNING), then one summary per minute with the count
    messages = lines.messages()
    assert len(messages) <= 4, messages
    assert "GetTasks from col9 refused: PERMISSION_DENIED 'col9' is not a collaborator" \
        in messages[0]
    assert lines.records[0].levelno == logging.WARNING
    counted = [int(m.split(" refused ")[1].split()[0]) for m in messages[1:]]
    assert all("more time(s) in the last" in m for m in messages[1:])
    refusals.flush()
    counted += [int(m.split(" refused ")[1].split()[0]) for m in lines.messages()[len(messages):]]
    assert sum(counted) == 9_999


def test_reasons_and_peers_are_separate_keys(lines: Lines) -> None:
    clock = Clock()
    refusals = _log(lines, clock)
    for _ in range(50):
        refusals.refused("col9", "PERMISSION_DENIED", "m")
        refusals.refused("col9", "UNAUTHENTICATED", "m")
        refusals.refused("10.0.0.7", "UNAUTHENTICATED", "m")
    assert len(lines.messages()) == 3
    assert len(refusals) == 3


def test_many_peers_bounded_memory_and_lines(lines: Lines) -> None:
    # Prepare: a client that changes its address at every call
    clock = Clock()
    refusals = _log(lines, clock, max_keys=100, new_keys_per_interval=20)
    # Execute: 10000 calls from 10000 addresses within 2 minutes
    for call in range(10_000):
        clock.now = 1000.0 + call * 0.012
        refusals.refused(f"10.{call // 256}.{call % 256}.1", "UNAUTHENTICATED", "no cert")
    refusals.flush()
    # Assert: memory bounded; at most 20 first-refusal lines a minute, the rest summarised
    assert len(refusals) <= 100
    messages = lines.messages()
    assert len(messages) <= 2 * 20 + 6, len(messages)
    summary = [m for m in messages if "not logged one by one" in m]
    assert summary and sum(int(m.split()[0]) for m in summary) == 10_000 - 40


def test_many_due_keys_are_one_line(lines: Lines) -> None:
    clock = Clock()
    refusals = _log(lines, clock, new_keys_per_interval=1000, lines_per_sweep=10)
    for _ in range(2):
        for peer in range(50):
            refusals.refused(f"p{peer}", "UNAUTHENTICATED", "m")
    before = len(lines.messages())
    clock.now += 61
    refusals.refused("p0", "UNAUTHENTICATED", "m")
    after = lines.messages()[before:]
    assert len(after) == 1 and after[0].startswith("51 refusal(s) from 50 peer(s)")


class FakeContext:
    def __init__(self, peer: str, cn: bytes | None = None) -> None:
        self._peer, self._cn = peer, cn
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_common_name": [self._cn]} if self._cn else {}

    def abort(self, code: grpc.StatusCode, message: str) -> None:
        self.aborted = (code, message)
        raise RuntimeError("aborted")


def test_peer_is_the_certificate_cn_or_the_address_without_port() -> None:
    assert peer_label(FakeContext("ipv4:10.1.2.3:5555", b"col1")) == "col1"
    assert peer_label(FakeContext("ipv4:10.1.2.3:5555")) == "10.1.2.3"
    assert peer_label(FakeContext("ipv6:[::1]:5555")) == "[::1]"


def test_abort_with_logs_a_refused_peer_once(caplog: pytest.LogCaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a peer from a new port at every call, as a reconnecting client; a fresh
    # process-wide log (earlier tests in this process used up its new-peers-per-minute lines)
    caplog.set_level(logging.INFO, logger="openfl_like")
    monkeypatch.setattr(status, "refusal_log", RefusalLog(status._log))
    # Execute
    for port in range(500):
        context = FakeContext(f"ipv4:192.0.2.77:{40000 + port}")
        with pytest.raises(RuntimeError):
            abort_with(context, AuthError("certificate revoked"), method="GetTasks")
        assert context.aborted == (grpc.StatusCode.UNAUTHENTICATED, "certificate revoked")
    with pytest.raises(RuntimeError):
        abort_with(FakeContext("ipv4:192.0.2.77:1", b"col9"), PermissionDeniedError("no"))
    # Assert
    mine = [r.getMessage() for r in caplog.records if "192.0.2.77" in r.getMessage()]
    assert mine == ["GetTasks from 192.0.2.77 refused: UNAUTHENTICATED certificate revoked "
                    "(repeats are counted and reported at most every 60 s)"]
    assert any("from col9 refused: PERMISSION_DENIED" in r.getMessage() for r in caplog.records)
