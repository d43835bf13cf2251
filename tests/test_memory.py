"""Freed heap memory goes back to the operating system between a run's phases (glibc), and elsewhere nothing fails."""

from __future__ import annotations

import platform
import sys

import pytest

from pipelines import memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's"
)
def test_free_heap_pages_are_returned_on_glibc() -> None:
    assert memory.release_free_memory() is True


def test_without_malloc_trim_it_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_malloc_trim", lambda: None)
    assert memory.release_free_memory() is False
