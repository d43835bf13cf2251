"""Which models changed since the last committed load, and which are due for their periodic re-check.

The model list returns each model's ``status`` and ``updated_at``; the API moves one or the other whenever it writes
an event, a late one included (see cohere-finetuning-api.md, "Models: what changes when"). A model's events and
metrics are therefore read only when the model is new, either field changed, ``updated_at`` is missing, or its
re-check is due. Nothing documents that behaviour as a guarantee, so every model is also re-read once per re-check
period, at a moment of its own within the period (spread by a hash of its id), so the re-checks of a fleet are
spread over the runs of a period instead of all falling due in one.

What a child resource saw is kept in its dlt state, which commits with the load: a run that fails marks nothing.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

DEFAULT_RECHECK_HOURS = 24.0


@dataclass(frozen=True)
class ModelRef:
    """What the model list says of a model that decides whether its children are read."""

    id: str
    status: str
    updated_at: str | None

    @classmethod
    def of(cls, model: dict[str, Any]) -> ModelRef:
        updated = model.get("updated_at")
        return cls(str(model["id"]), str(model.get("status") or ""), str(updated) if updated else None)

    @property
    def fingerprint(self) -> str:
        """The model record's version: status and ``updated_at``, hashed to keep dlt state small."""
        return hashlib.blake2b(f"{self.status}|{self.updated_at}".encode(), digest_size=6).hexdigest()


@dataclass
class Rechecks:
    """The re-check schedule of one run: ``now`` in seconds since the epoch, ``full`` to re-read every model."""

    period_seconds: float
    full: bool
    now: float

    def due(self, model: ModelRef, checked: list[Any] | None) -> bool:
        """Whether the model's children must be read: new, changed, of unknown version, or due for a re-check."""
        if self.full or checked is None or model.updated_at is None:
            return True
        fingerprint, checked_at = checked
        return fingerprint != model.fingerprint or self.slot(model.id, self.now) > self.slot(model.id, checked_at)

    def mark(self, model: ModelRef) -> list[Any]:
        """What to keep in state once the model's children were read: its version and when."""
        return [model.fingerprint, int(self.now)]

    def slot(self, model_id: str, moment: float) -> int:
        """Which of the model's re-check periods ``moment`` falls in; each model's periods start at its own phase."""
        if self.period_seconds <= 0:
            return math.floor(moment)  # no period: re-check on every run a second or more apart
        phase = int.from_bytes(hashlib.blake2b(model_id.encode(), digest_size=4).digest()) / 2**32
        return math.floor((moment - phase * self.period_seconds) / self.period_seconds)
