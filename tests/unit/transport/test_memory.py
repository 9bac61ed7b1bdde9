"""transport.memory: malloc arena cap and heap release (glibc only)."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from openfl_like.transport import memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_limit_malloc_arenas_applies_once_on_glibc() -> None:
    assert ctypes.util.find_library("c") is not None
    assert memory.limit_malloc_arenas() is True
    assert memory.limit_malloc_arenas() is True  # idempotent


def test_limit_malloc_arenas_is_a_no_op_without_a_c_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "_applied", False)
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    assert memory.limit_malloc_arenas() is False


def test_limit_malloc_arenas_refuses_a_non_positive_cap() -> None:
    assert memory.limit_malloc_arenas(0) is False


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="malloc_trim is glibc's")
def test_release_free_heap_returns_freed_pages_on_glibc() -> None:
    # Many small blocks freed inside the heap (below the mmap threshold): trim gives pages back.
    blocks = [bytearray(64 * 1024) for _ in range(2000)]
    keep = blocks[-1]
    del blocks
    assert memory.release_free_heap() is True
    assert len(keep) == 64 * 1024


def test_release_free_heap_is_a_no_op_without_a_c_library(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setattr(memory.ctypes.util, "find_library", lambda name: None)
    assert memory.release_free_heap() is False


def test_small_uploads_skip_the_heap_trim(monkeypatch) -> None:
    from openfl_like.transport import memory

    calls: list[int] = []
    monkeypatch.setattr(memory, "release_free_heap", lambda: calls.append(1) or True)
    assert memory.release_free_heap_after(4096) is False
    assert memory.release_free_heap_after(memory.TRIM_MIN_UPLOAD_BYTES) is True
    assert calls == [1]
