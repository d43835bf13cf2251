"""Counts in words for the one-line summaries: ``1 job``, ``2 jobs``."""

from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, in the plural (``many``, or the noun and an s) unless there is exactly one."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"
