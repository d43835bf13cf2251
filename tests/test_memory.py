"""Freed heap memory goes back to the operating system between a run's phases (glibc), and elsewhere nothing fails."""

from __future__ import annotations

import gc
import platform
import sys

import pytest

from pipelines import memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's"
)
def test_free_heap_pages_are_returned_and_the_mmap_threshold_pinned_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert memory.release_free_memory() is True
    assert memory.fix_mmap_threshold() is True


def test_a_users_mmap_threshold_is_theirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert memory.fix_mmap_threshold() is False


def test_without_the_c_librarys_functions_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_libc_function", lambda name: None)
    assert memory.release_free_memory() is False
    assert memory.fix_mmap_threshold() is False


def test_a_run_keeps_the_collector_off_what_was_imported_then_puts_it_back() -> None:
    before = gc.get_freeze_count()
    with memory.imports_out_of_gc():
        assert gc.get_freeze_count() > before  # out of the collector's passes while the run lasts
    assert gc.get_freeze_count() == before
