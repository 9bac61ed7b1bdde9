"""glibc malloc tuning: cap the arenas, and hand the heap's free pages back after uploads.

Why: every message of a tensor stream is a buffer of a few MiB (the chunk), and gRPC's Python
layer makes two or three of them per message (a growing bytearray, then ``bytes``; the encoded
frame, then grpc's copy), on whichever of the server's threads handles the call. glibc gives a
thread that meets lock contention an arena of its own (up to 8 per core), and a block freed into
an arena stays there for that arena's reuse. Measured on the 256 MiB benchmark (aggregator in one
process, two collaborators, 4 MiB chunks, load average 3-4): 14 arenas kept ~120 MB of freed
chunks; peak RSS 611, 671 and 847 MiB in three runs. With at most two arenas: 582 and 594 MiB,
rounds as fast (2.7-3.0 s against 2.6-3.2 s). The other knob, a fixed 1 MiB mmap threshold, kept
RSS lower still but made every message buffer fresh pages to fault in: rounds took 1.3-1.5 s
longer.

The heap also keeps the chunk buffers an upload frees: freed blocks inside the heap are not
returned to the kernel, and the free space fragments, so it stays resident through the round's
aggregation and creeps up from round to round. Measured on the 256 MiB benchmark (aggregator
in-process, two collaborator processes): at the aggregation peak the heap held 280-420 MiB of
which 20-80 MiB in use, RssAnon peaking at 620-665 MiB; between rounds RssAnon crept 385 -> 423
MiB. ``release_free_heap`` (glibc's ``malloc_trim(0)``, which also returns whole free pages in
the middle of every arena) gives them back; the aggregator calls it after staging each upload,
before the round may close: RssAnon then peaked at 448 MiB and stayed at 328-339 MiB between
rounds.

glibc fixes its arena limit the first time a second arena is needed, so this only works when
called before the process has more than one thread that allocates; later calls change nothing
(setting ``MALLOC_ARENA_MAX`` in the environment of the process is the robust equivalent).
Elsewhere (musl, macOS, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any

from openfl_like.core.logging import get_logger

_log = get_logger(__name__)

M_ARENA_MAX = -8  # glibc malloc.h
DEFAULT_ARENA_MAX = 2

_lock = threading.Lock()
_applied = False


def _glibc_function(name: str) -> Any | None:
    """``name`` from the C library when it is glibc (has it), else None."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        return getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_heap() -> bool:
    """Return the heap's free pages to the kernel (glibc ``malloc_trim``); True when some were.

    Cheap (a walk over the arenas' free lists, a few ms for ~100 MiB) and safe at any time from
    any thread; see the module docstring for why the aggregator calls it after each upload.
    """
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


# Below this update size an upload leaves too little behind to be worth a trim (~1 ms a call,
# which a tiny model's round cannot afford: bench_rounds (a) targets < 20 ms per round).
TRIM_MIN_UPLOAD_BYTES = 16 * 1024 * 1024


def release_free_heap_after(nbytes: int, *, min_bytes: int = TRIM_MIN_UPLOAD_BYTES) -> bool:
    """``release_free_heap`` after an upload of ``nbytes``, only when the upload was large."""
    return nbytes >= min_bytes and release_free_heap()


def limit_malloc_arenas(arena_max: int = DEFAULT_ARENA_MAX) -> bool:
    """Ask glibc for at most ``arena_max`` malloc arenas; True when glibc accepted the setting.

    Process-wide and idempotent: the first accepted call's limit stays. See the module docstring
    for when it takes effect.
    """
    global _applied
    if arena_max <= 0:
        return False
    with _lock:
        if _applied:
            return True
        mallopt = _glibc_function("mallopt")
        if mallopt is None:
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        _applied = bool(mallopt(M_ARENA_MAX, arena_max))
        if _applied:
            _log.debug("malloc arenas capped at %d", arena_max)
        return _applied
