"""The operator's say over experiments: decision records on disk and the envoy's Unix socket.

``<ws>/experiments/<exp>/decision.json`` records, per experiment, ``pending``, ``approved`` or
``rejected`` (with a reason) and whether the envoy has acted on it (``applied``). It is written
atomically, so an operator may decide while the envoy is down and the envoy applies the decision
at its next start.

While the envoy runs, it listens on ``<ws>/envoy.sock`` (mode 0600: only its own user may
command it) for one JSON line per connection, answered by one JSON line:
``{"approve": EXP}``, ``{"reject": EXP, "reason": R}``, ``{"status": true}``. The server thread
waits in ``select`` on the socket and a wake-up pipe, so it neither polls nor outlives ``close``.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from openfl_like.core.errors import (
    ConfigError,
    ConnectionFailedError,
    NotFoundError,
    OpenflLikeError,
)
from openfl_like.core.fsutil import atomic_write
from openfl_like.core.logging import get_logger

log = get_logger(__name__)

DECISION_FILE = "decision.json"
MAX_REQUEST_BYTES = 64 * 1024
_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; longer paths go through /proc/self/fd


class Decision(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class DecisionRecord:
    experiment: str
    decision: Decision
    reason: str = ""
    applied: bool = False  # the envoy has acted on it (started the run / reported the refusal)
    time: float = 0.0


def decision_path(experiment_dir: Path) -> Path:
    return experiment_dir / DECISION_FILE


def read_decision(experiment_dir: Path) -> DecisionRecord | None:
    """The recorded decision, None when there is none; ConfigError when it is unreadable."""
    path = decision_path(experiment_dir)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return DecisionRecord(experiment=str(doc["experiment"]),
                              decision=Decision(doc["decision"]),
                              reason=str(doc.get("reason", "")),
                              applied=bool(doc.get("applied", False)),
                              time=float(doc.get("time", 0.0)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a decision record ({exc})") from None


def write_decision(experiment_dir: Path, record: DecisionRecord) -> None:
    doc = asdict(record)
    doc["decision"] = record.decision.value
    doc["time"] = record.time or time.time()
    atomic_write(decision_path(experiment_dir), json.dumps(doc, indent=1) + "\n", mode=0o600)


# -- the socket ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _short_address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits sockaddr_un: itself, or /proc/self/fd/N/name."""
    text = str(path)
    if len(os.fsencode(text)) <= _SUN_PATH_MAX:
        yield text
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


Handler = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class OperatorSocket:
    """Serves ``handler`` on a Unix socket in a thread (module docstring)."""

    def __init__(self, path: Path, handler: Handler, *, client_timeout: float = 5.0) -> None:
        self.path = path
        self._handler = handler
        self._client_timeout = client_timeout
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = -1, -1
        self._thread: threading.Thread | None = None

    def start(self) -> OperatorSocket:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _short_address(self.path) as address:
                sock.bind(address)
            # Before listen() nobody can connect, so the socket is never reachable with a
            # wider mode than 0600.
            os.chmod(self.path, 0o600)
            sock.listen(8)
        except OSError as exc:
            sock.close()
            raise ConfigError(f"cannot listen on {self.path}: {exc.strerror or exc}") from None
        self._sock = sock
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="envoy-operator")
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            self._thread.join(5.0)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = -1

    def _remove_stale(self) -> None:
        """A socket left by an envoy that died is removed; a live one means a second envoy."""
        if not self.path.exists() and not self.path.is_symlink():
            return
        try:
            send_operator_command(self.path, {"status": True}, timeout=2.0)
        except EnvoyNotRunningError:
            self.path.unlink(missing_ok=True)
            return
        except OpenflLikeError:
            pass
        raise ConfigError(f"another envoy already serves {self.path}")

    def _serve(self) -> None:
        assert self._sock is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ, "accept")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while True:
                for key, _ in selector.select():
                    if key.data == "wake":
                        return
                    try:
                        conn, _ = self._sock.accept()
                    except OSError:
                        continue
                    with conn:
                        self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(self._client_timeout)
        try:
            request = _read_line(conn)
            try:
                doc = json.loads(request)
                if not isinstance(doc, dict):
                    raise ValueError("not an object")
            except ValueError:
                reply: Mapping[str, Any] = {"ok": False, "code": "invalid",
                                            "error": "expected one JSON object per line"}
            else:
                try:
                    reply = self._handler(doc)
                except OpenflLikeError as exc:
                    reply = {"ok": False, "code": exc.code, "error": exc.message}
                except Exception as exc:  # the server thread must survive a handler bug
                    log.exception("operator command failed")
                    reply = {"ok": False, "code": "error", "error": repr(exc)}
            conn.sendall((json.dumps(reply) + "\n").encode())
        except OSError as exc:
            log.warning("operator connection failed: %s", exc)


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            raise OSError(errno.EMSGSIZE, "request too long")
    return data.split(b"\n", 1)[0]


class EnvoyNotRunningError(ConnectionFailedError):
    """Nobody listens on the envoy's socket."""


def send_operator_command(path: Path, request: Mapping[str, Any], *, timeout: float = 10.0
                          ) -> dict[str, Any]:
    """One request to a running envoy; its reply. ``EnvoyNotRunningError`` when none listens;
    an error reply raises NotFoundError (unknown experiment) or ConfigError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with _short_address(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise EnvoyNotRunningError(f"no envoy is listening on {path}") from None
        except OSError as exc:
            raise ConnectionFailedError(f"cannot reach the envoy at {path}: "
                                        f"{exc.strerror or exc}") from None
        try:
            sock.sendall((json.dumps(dict(request)) + "\n").encode())
            line = _read_line(sock)
        except OSError as exc:
            raise ConnectionFailedError(f"the envoy at {path} did not answer: "
                                        f"{exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(line)
    except ValueError:
        raise ConnectionFailedError(f"the envoy at {path} sent no valid answer") from None
    if not isinstance(reply, dict):
        raise ConnectionFailedError(f"the envoy at {path} sent no valid answer")
    if not reply.get("ok", False):
        message = str(reply.get("error", "refused"))
        if reply.get("code") == NotFoundError.code:
            raise NotFoundError(message)
        raise ConfigError(message)
    return reply
