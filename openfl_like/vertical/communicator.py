"""The two-party vertical :class:`Communicator`: a leader and a follower exchange named tensors
step by step, agree on the checkpoint and on where their readers start, and fail any operation
that outlives its timeout (the equivalent of EFL's ``Communicator``).

Each party runs a server (its :class:`~openfl_like.vertical.inbox.Inbox` behind the transport)
and a client (a :class:`~openfl_like.vertical.link.PeerLink`). ``initialize`` starts the server,
then connects with backoff until ``connect_timeout_ms``, so either party may start first; a
refusal (session or roles differ, wrong certificate) fails at once with the peer's reason.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from openfl_like.core.errors import (
    ConfigError,
    OpenflLikeError,
    PlanMismatchError,
    ProtocolError,
)
from openfl_like.core.logging import get_logger
from openfl_like.core.vertical import (
    CommunicatorClosedError,
    Control,
    ControlKind,
    Hello,
    OperationTimeoutError,
    PartyRole,
    PeerGoneError,
    ReaderState,
)
from openfl_like.vertical import checks
from openfl_like.vertical.connect import connect_with_backoff
from openfl_like.vertical.inbox import DEFAULT_MAX_INBOX_BYTES, FailCallback, Inbox, control_key
from openfl_like.vertical.link import PeerLink, PendingSend
from openfl_like.vertical.pending import Monitor, PendingOps
from openfl_like.vertical.runtime import StopStack, await_send, say_goodbye
from openfl_like.vertical.wiring import (
    GrpcTransport,
    Transport,
    Wire,
    default_settings,
    split_addr,
    tls_files_for,
)

if TYPE_CHECKING:
    from openfl_like.transport.credentials import TlsFiles

_log = get_logger(__name__)

GOODBYE_TIMEOUT_S = 1.0
SERVER_GRACE_S = 0.5

_NEW, _CONNECTING, _RUNNING, _CLOSED = "new", "connecting", "running", "closed"


class Communicator:
    """One party of a vertical pair. Thread-safe; ``send``/``recv`` use the current step.

    Every blocking call takes ``timeout_ms`` (default ``default_timeout_ms``) and fails with
    ``OperationTimeoutError`` naming the operation, the name, the step and the peer; after the
    peer's goodbye, what has not arrived fails at once with ``PeerGoneError``; after
    ``shutdown`` every call raises ``CommunicatorClosedError``. Only the leader sends the
    checkpoint version and reader states, only the follower receives them (``ConfigError``).
    """

    def __init__(
        self,
        federal_role: PartyRole | str,
        peer_addr: str,
        local_addr: str = "0.0.0.0:0",
        *,
        name: str | None = None,
        peer_name: str | None = None,
        session_id: str = "vertical",
        pki_dir: Path | str | None = None,
        tls_files: TlsFiles | None = None,
        tls: bool = True,
        client_threads: int = 2,
        server_threads: int = 4,
        scan_interval_ms: int = 100,
        default_timeout_ms: int = 60_000,
        connect_timeout_ms: int = 120_000,
        settings: Any = None,
        _transport: Transport | None = None,
        _max_inbox_bytes: int | None = None,
    ) -> None:
        self.role = (federal_role if isinstance(federal_role, PartyRole)
                     else PartyRole.parse(federal_role))
        self.name = name or self.role.value
        self.peer_name = peer_name or self.role.peer.value
        if self.name == self.peer_name:
            raise ConfigError(f"the party and its peer have the same name {self.name!r}")
        if not session_id:
            raise ConfigError("session_id must not be empty")
        if _transport is None:  # a bad address fails here, not at initialize
            split_addr(local_addr, "local_addr")
            split_addr(peer_addr, "peer_addr", any_port=False)
        self.peer_addr, self.local_addr, self.session_id = peer_addr, local_addr, session_id
        self._pki_dir, self._tls_files, self._tls = pki_dir, tls_files, tls
        self.client_threads = int(checks.positive("client_threads", client_threads))
        self.server_threads = int(checks.positive("server_threads", server_threads))
        self.scan_interval_s = checks.positive("scan_interval_ms", scan_interval_ms) / 1000
        self.default_timeout_s = checks.positive("default_timeout_ms", default_timeout_ms) / 1000
        self.connect_timeout_s = checks.positive("connect_timeout_ms", connect_timeout_ms) / 1000
        self._settings = settings
        self._transport = _transport
        self._max_inbox_bytes = _max_inbox_bytes
        self.peer_desc = f"peer {self.peer_name} at {peer_addr}"

        self._lifecycle = threading.Lock()
        self._state = _NEW
        self._stopping = threading.Event()
        # set by shutdown or by our server refusing the peer's Connect: ends the connect wait
        self._connect_wake = threading.Event()
        self._refused: OpenflLikeError | None = None
        self._step = 0
        self._step_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self._control_order = threading.Lock()
        self._ops = PendingOps()
        self._inbox: Inbox | None = None
        self._wire: Wire | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._started = StopStack(self.name)  # what _teardown stops, in order
        self._closed_error: CommunicatorClosedError | None = None

    @classmethod
    def over_link(cls, federal_role: PartyRole | str, transport: Transport, *, name: str,
                  peer_name: str, session_id: str = "vertical", **kwargs: Any) -> Communicator:
        """A communicator over an injected transport (``memory_link.memory_pair()`` in tests)."""
        return cls(federal_role, f"memory:{peer_name}", "memory", name=name,
                   peer_name=peer_name, session_id=session_id, _transport=transport, **kwargs)

    def __repr__(self) -> str:
        return (f"Communicator({self.name} as {self.role.value}, {self.peer_desc}, "
                f"step {self.step}, {self._state})")

    # ------------------------------------------------------------------ lifecycle
    def initialize(self) -> None:
        """Start the server, the monitor and connect to the peer (idempotent while running)."""
        with self._lifecycle:
            if self._state == _RUNNING:
                return
            if self._state == _CLOSED:
                raise self._closed()
            if self._state == _CONNECTING:
                raise ConfigError("initialize() is already running in another thread")
            self._state = _CONNECTING
        try:
            self._start()
            attempts, took = self._connect()
        except BaseException as error:
            with self._lifecycle:
                self._state = _CLOSED
                if self._closed_error is None:
                    self._closed_error = CommunicatorClosedError(
                        f"communicator {self.name} failed to initialize: {error}")
            self._teardown(self._closed_error)
            raise
        with self._lifecycle:
            if self._state == _CLOSED:  # shut down while connecting
                raise self._closed()
            self._state = _RUNNING
        _log.info("%s (%s) connected to %s after %d attempt(s) in %.2f s (session %s)",
                  self.name, self.role.value, self.peer_desc, attempts, took, self.session_id)

    def _start(self) -> None:
        transport = self._transport
        settings = self._settings
        if transport is None:
            settings = settings if settings is not None else default_settings()
            transport = GrpcTransport(
                peer_addr=self.peer_addr, local_addr=self.local_addr, me=self.name,
                peer=self.peer_name, session_id=self.session_id, my_role=self.role,
                tls_files=tls_files_for(self.name, tls=self._tls, tls_files=self._tls_files,
                                        pki_dir=self._pki_dir, settings=settings),
                settings=settings, client_threads=self.client_threads,
                server_threads=self.server_threads)
        max_bytes = (self._max_inbox_bytes
                     or getattr(settings, "max_inbox_bytes", None) or DEFAULT_MAX_INBOX_BYTES)
        self._inbox = Inbox(me=self.name, peer=self.peer_name, my_role=self.role,
                            session_id=self.session_id, max_bytes=int(max_bytes), step=self.step,
                            on_goodbye=self._peer_said_goodbye,
                            on_refused=self._refused_peer)
        monitor = Monitor(self._ops, self.scan_interval_s, self.peer_desc)
        self._started.push(monitor.stop)
        monitor.start()
        pool = concurrent.futures.ThreadPoolExecutor(
            self.client_threads, thread_name_prefix=f"vertical-send-{self.name}")
        self._pool = pool
        self._started.push(lambda: pool.shutdown(wait=False))
        wire = transport.start(self._inbox)
        self._wire = wire
        self._started.push(lambda: wire.stop(SERVER_GRACE_S))
        self._started.push(wire.link.close)
        if self._stopping.is_set():  # shut down meanwhile: initialize's clean-up stops it all
            raise self._closed()
        _log.info("%s (%s) serving on %s (port %d)", self.name, self.role.value,
                  self.local_addr, self._wire.port)

    def _connect(self) -> tuple[int, float]:
        assert self._wire is not None
        return connect_with_backoff(
            self._wire.link,
            lambda: Hello(self.session_id, self.name, self.role, self.peer_name, step=self.step),
            me=self.name, peer_desc=self.peer_desc, timeout_s=self.connect_timeout_s,
            stopping=self._stopping, closed=self._closed, wake=self._connect_wake,
            refused=lambda: self._refused)

    def _refused_peer(self, error: OpenflLikeError) -> None:
        """Our server refused the peer's Connect: it will not come to terms with us either, so
        a connect still retrying ends now with the same reason (not after its whole window)."""
        if self._refused is None:
            self._refused = PlanMismatchError(
                f"{self.name} refused the connection of {self.peer_desc}: {error.message}")
        self._connect_wake.set()

    def shutdown(self, reason: str = "done") -> None:
        """Say goodbye to the peer (best effort), fail pending operations, stop everything.
        Idempotent; the communicator cannot be used or initialized again."""
        with self._lifecycle:
            if self._state == _CLOSED:
                return
            was, self._state = self._state, _CLOSED
            self._closed_error = CommunicatorClosedError(
                f"communicator {self.name} was shut down ({reason})")
            self._stopping.set()
            self._connect_wake.set()
        if was == _NEW:
            _log.info("%s shut down before initialize (%s)", self.name, reason)
            return
        error = self._closed_error
        if self._inbox is not None:
            self._inbox.close(error)
        failed = self._ops.fail_all(error)
        if was == _RUNNING:
            self._goodbye(reason)
        self._teardown(error)
        _log.info("%s (%s) shut down at step %d (%s)%s", self.name, self.role.value, self.step,
                  reason, f"; failed {failed} pending operation(s)" if failed else "")

    def _goodbye(self, reason: str) -> None:
        inbox, wire = self._inbox, self._wire
        if wire is None or (inbox is not None and inbox.peer_gone is not None):
            return  # nobody to tell
        say_goodbye(wire.link, Control(self._next_seq(), ControlKind.GOODBYE, reason=reason),
                    GOODBYE_TIMEOUT_S, self.peer_desc)

    def _peer_said_goodbye(self, reason: str) -> None:
        failed = self._ops.fail_outbound(lambda op: self._gone_error(op.describe(), reason))
        if failed:
            _log.info("failed %d pending send(s): %s said goodbye", failed, self.peer_desc)

    def _gone_error(self, what: str, reason: str) -> PeerGoneError:
        return PeerGoneError(f"{what} failed: peer {self.peer_name} said goodbye ({reason})")

    def _teardown(self, error: BaseException) -> None:
        """Stop what was started and is not stopped yet (safe to call again, and from
        ``initialize`` racing ``shutdown``)."""
        self._stopping.set()
        if self._inbox is not None:
            self._inbox.close(error)
        self._ops.fail_all(error)
        self._started.stop_all()

    def __enter__(self) -> Communicator:
        self.initialize()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.shutdown("done" if exc is None else f"error: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ steps
    @property
    def step(self) -> int:
        with self._step_lock:
            return self._step

    @property
    def local_port(self) -> int | None:
        """The bound server port (``local_addr`` may ask for port 0); None before initialize."""
        return self._wire.port if self._wire is not None else None

    @property
    def closed(self) -> bool:
        return self._state == _CLOSED

    def add_step(self) -> int:
        """Advance to the next step (after each batch); returns it."""
        with self._step_lock:
            self._check_not_closed()
            self._step += 1
            if self._inbox is not None:
                self._inbox.set_step(self._step)
            return self._step

    def set_step(self, step: int) -> None:
        """Jump to ``step`` (e.g. after restoring a checkpoint)."""
        checks.non_negative_int("step", step)
        with self._step_lock:
            self._check_not_closed()
            self._step = step
            if self._inbox is not None:
                self._inbox.set_step(step)

    # ------------------------------------------------------------------ tensors
    def send(self, name: str, array: Any, timeout_ms: int | None = None) -> None:
        """Send this step's tensor ``name``; blocks until the peer acknowledged it."""
        link, step = self._running("send"), self.step
        checks.name(name)
        self._send_tensor(link, name, step, checks.wire_array(array), timeout_ms)

    def send_async(self, name: str, array: Any, timeout_ms: int | None = None
                   ) -> concurrent.futures.Future[None]:
        """``send`` on the client pool; the step is the current one when called. Do not
        change ``array`` until the future is done."""
        link, step = self._running("send_async"), self.step
        checks.name(name)
        wire_array = checks.wire_array(array)
        pool = self._pool
        if pool is None:
            raise self._closed()
        try:
            return pool.submit(self._send_tensor, link, name, step, wire_array, timeout_ms)
        except RuntimeError:  # the pool was shut down between the check and the submit
            raise self._closed() from None

    def recv(self, name: str, dtype: Any = None, timeout_ms: int | None = None) -> np.ndarray:
        """The peer's tensor ``name`` of this step; blocks until it arrives."""
        self._running("recv")
        checks.name(name)
        step = self.step
        timeout_s = checks.timeout_s(timeout_ms, self.default_timeout_s)
        assert self._inbox is not None
        try:
            array = self._inbox.take_tensor(
                name, step, self._register("recv", name, step, timeout_s),
                f"recv {name!r} at step {step}")
        except OperationTimeoutError as error:
            held = self._inbox.held_steps(name)
            if not held:
                raise
            # the classic pairing bug: both sides send the same names at different steps
            raise OperationTimeoutError(
                f"{error}; {name!r} is here for step(s) {', '.join(map(str, held[:5]))}: "
                "are both parties at the same step?") from None
        if dtype is not None:
            want = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
            if array.dtype != want:
                raise ProtocolError(f"recv {name!r} at step {step}: the peer sent {array.dtype}, "
                                    f"expected {want}")
        return array

    def _send_tensor(self, link: PeerLink, name: str, step: int, array: np.ndarray,
                     timeout_ms: int | None) -> None:
        self._check_not_closed()
        timeout_s = checks.timeout_s(timeout_ms, self.default_timeout_s)
        pending = link.send_tensor(name, step, array, timeout_s)
        self._await(pending, "send", name, step, timeout_s)

    # ------------------------------------------------------------------ control
    def send_ckpt_version(self, version: int, timeout_ms: int | None = None) -> None:
        """Leader: tell the follower which checkpoint both restore."""
        self._only(PartyRole.LEADER, "send_ckpt_version")
        checks.non_negative_int("checkpoint version", version)
        self._send_control(ControlKind.CHECKPOINT_VERSION, "send_ckpt_version", timeout_ms,
                           version=version)

    def recv_ckpt_version(self, timeout_ms: int | None = None) -> int:
        """Follower: the checkpoint version the leader chose."""
        self._only(PartyRole.FOLLOWER, "recv_ckpt_version")
        return self._recv_control(control_key(ControlKind.CHECKPOINT_VERSION),
                                  "recv_ckpt_version", "", timeout_ms).version

    def send_reader_state(self, name: str, block_id: int, sample_index: int,
                          timeout_ms: int | None = None) -> None:
        """Leader: data set ``name`` (re)starts reading at this block and sample."""
        self._only(PartyRole.LEADER, "send_reader_state")
        checks.name(name)
        checks.non_negative_int("block_id", block_id)
        checks.non_negative_int("sample_index", sample_index)
        self._send_control(ControlKind.READER_STATE, "send_reader_state", timeout_ms,
                           name=name, block_id=block_id, sample_index=sample_index)

    def recv_reader_state(self, name: str, timeout_ms: int | None = None) -> ReaderState | None:
        """Follower: the next reader state the leader sent for ``name``, in order; None when
        the leader terminated that reader (after the states it sent before)."""
        self._only(PartyRole.FOLLOWER, "recv_reader_state")
        checks.name(name)
        control = self._recv_control(control_key(ControlKind.READER_STATE, name),
                                     "recv_reader_state", name, timeout_ms)
        if control.kind is ControlKind.TERMINATE_READER:
            return None
        return ReaderState(control.name, control.block_id, control.sample_index)

    def terminate_reader(self, name: str, timeout_ms: int | None = None) -> None:
        """Leader: data set ``name`` is finished."""
        self._only(PartyRole.LEADER, "terminate_reader")
        checks.name(name)
        self._send_control(ControlKind.TERMINATE_READER, "terminate_reader", timeout_ms,
                           name=name)

    def _send_control(self, kind: ControlKind, op: str, timeout_ms: int | None,
                      **fields: Any) -> None:
        link = self._running(op)
        timeout_s = checks.timeout_s(timeout_ms, self.default_timeout_s)
        # One at a time, so the follower's queues hold them in the order they were sent.
        with self._control_order:
            self._check_not_closed()
            control = Control(self._next_seq(), kind, **fields)
            pending = link.send_control(control, timeout_s)
            self._await(pending, op, fields.get("name", ""), self.step, timeout_s)

    def _recv_control(self, key: tuple[str, str], op: str, name: str,
                      timeout_ms: int | None) -> Control:
        self._running(op)
        step, timeout_s = self.step, checks.timeout_s(timeout_ms, self.default_timeout_s)
        assert self._inbox is not None
        what = f"{op} {name!r} at step {step}" if name else f"{op} at step {step}"
        return self._inbox.take_control(key, self._register(op, name, step, timeout_s), what)

    # ------------------------------------------------------------------ helpers
    def _await(self, pending: PendingSend, op: str, name: str, step: int,
               timeout_s: float) -> None:
        def failed_already() -> BaseException | None:
            if self._state == _CLOSED:
                return self._closed()
            gone = self._inbox.peer_gone if self._inbox is not None else None
            if gone is None:
                return None
            return self._gone_error(f"{op} {name!r} at step {step}" if name
                                    else f"{op} at step {step}", gone)

        await_send(self._ops, pending, op=op, name=name, step=step, timeout_s=timeout_s,
                   failed_already=failed_already,
                   closed=lambda: self._closed() if self._state == _CLOSED else None)

    def _register(self, op: str, name: str, step: int,
                  timeout_s: float) -> Callable[[FailCallback], Callable[[], None]]:
        def register(fail: FailCallback) -> Callable[[], None]:
            token = self._ops.add(op, name, step, timeout_s, fail)
            return lambda: self._ops.remove(token)

        return register

    def _running(self, op: str) -> PeerLink:
        state = self._state
        if state == _RUNNING and self._wire is not None:
            return self._wire.link
        if state == _CLOSED:
            raise self._closed()
        raise ConfigError(f"{op}: communicator {self.name} is not initialized "
                          "(call initialize() first)")

    def _check_not_closed(self) -> None:
        if self._state == _CLOSED:
            raise self._closed()

    def _closed(self) -> CommunicatorClosedError:
        return CommunicatorClosedError(
            str(self._closed_error) if self._closed_error is not None
            else f"communicator {self.name} is shut down; it cannot be used again")

    def _only(self, role: PartyRole, op: str) -> None:
        if self.role is not role:
            raise ConfigError(f"{op} is for the {role.value} only; {self.name} is the "
                              f"{self.role.value}")

    def _next_seq(self) -> int:
        with self._seq_lock:
            return next(self._seq)
