"""What a run must read: which listed items (models, jobs) changed since the last committed load, and which are due
for a re-check. Each provider's source decides from these (``what_to_read`` in its source.py).

Cohere's model list returns each model's ``status`` and ``updated_at``; the API moves one or the other whenever it
writes an event, a late one included (see cohere-finetuning-api.md, "Models: what changes when"). A model's events and
metrics are therefore read only when the model is new, either field changed, ``updated_at`` is missing, or its
re-check is due. Nothing documents that behaviour as a guarantee, so every model is also re-read once per re-check
period, at a moment of its own within the period (a hash of its id), so the re-checks of a fleet are spread over the
runs of a period instead of all falling due in one. Metrics of a model in training are read on every run: they grow
while the model record stays the same.

What the runs saw is kept in dlt state, which commits with the load, so a run that fails marks nothing. At fleet scale
dlt state is the largest thing a run holds (dlt decodes it into several copies), so each model has one short string in
one map: ``sources.cohere_finetuning.models[id] = "<event cursor µs>|<events seen>|<highest step>|<metrics seen>|<its
time µs>|<restarts seen>"``, the last two absent in state written before they were kept (restarts: Together AI).

Marks from the future count as due: a run on a host whose clock ran ahead must not switch re-checks off until the
clock catches up.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

DEFAULT_RECHECK_HOURS = 24.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)  # a run holds one per listed model: 20,000 at fleet scale
class ModelRef:
    """A listed model and what this run reads of it."""

    id: str
    status: str
    updated_at: str | None
    events: bool = True
    metrics: bool = True
    started: bool = False  # the listing shows it started once (``started_at``, ``completed_at``): it may have metrics

    @classmethod
    def of(cls, model: dict[str, Any]) -> ModelRef:
        updated = model.get("updated_at")
        started = bool(model.get("started_at") or model.get("completed_at"))
        return cls(str(model["id"]), str(model.get("status") or ""), str(updated) if updated else None, started=started)

    @property
    def fingerprint(self) -> str:
        """The model record's version: status and ``updated_at``, hashed to keep dlt state small."""
        if self.updated_at is None:
            return ""  # unknown: never matches, so the model is always read
        return hashlib.blake2b(f"{self.status}|{self.updated_at}".encode(), digest_size=5).hexdigest()


@dataclass(frozen=True, slots=True)
class Seen:
    """What the committed loads saw of one model."""

    cursor: int | None = None  # newest event, microseconds since the epoch
    events: str = ""  # the fingerprint of the model when its events were last read
    step: int | None = None  # highest training step loaded; -1 when read and there were none
    metrics: str = ""  # the fingerprint of the model when its metrics were last read
    step_at: int | None = None  # when the highest step ran, microseconds since the epoch
    restarts: int | None = None  # restarts its events showed when its metrics were last read (None: not kept yet)

    @classmethod
    def unpack(cls, text: str | None) -> Seen:
        if not text:
            return cls()
        cursor, events, step, metrics, *rest = text.split("|")
        step_at = rest[0] if rest else ""
        restarts = rest[1] if len(rest) > 1 else ""
        return cls(
            int(cursor) if cursor else None,
            events,
            int(step) if step else None,
            metrics,
            int(step_at) if step_at else None,
            int(restarts) if restarts else None,
        )

    def pack(self) -> str:
        cursor = "" if self.cursor is None else str(self.cursor)
        step = "" if self.step is None else str(self.step)
        text = f"{cursor}|{self.events}|{step}|{self.metrics}"
        if self.restarts is not None:
            return f"{text}|{'' if self.step_at is None else self.step_at}|{self.restarts}"
        return text if self.step_at is None else f"{text}|{self.step_at}"


class SeenModels:
    """The per-model map in dlt state (a dict of packed strings), read and updated by the run."""

    def __init__(self, source_state: dict[str, Any], events_state: dict[str, Any]) -> None:
        self.map: dict[str, str] = source_state.setdefault("models", {})
        migrate_cursors(self.map, events_state)

    def get(self, model_id: str) -> Seen:
        return Seen.unpack(self.map.get(model_id))

    def update(self, model_id: str, **changes: Any) -> None:
        self.map[model_id] = replace(self.get(model_id), **changes).pack()

    def cursors(self) -> int:
        """How many models have an event cursor."""
        return sum(1 for text in self.map.values() if not text.startswith("|"))


def migrate_cursors(models: dict[str, str], events_state: dict[str, Any]) -> None:
    """Move the event cursors of earlier versions (``resources.events.cursors``: id -> ISO time) into the map.

    Those models have no fingerprint yet, so each is read once more, from its cursor as before.
    """
    legacy = events_state.pop("cursors", None)
    if not isinstance(legacy, dict):
        return
    for model_id, cursor in legacy.items():
        if model_id not in models:
            moment = datetime.fromisoformat(str(cursor))
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
            models[model_id] = Seen(cursor=(moment - EPOCH) // _MICROSECOND).pack()


_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - EPOCH


@dataclass
class Rechecks:
    """The re-check schedule: ``now`` and the last run that listed every model, in seconds since the epoch."""

    period_seconds: float
    now: float
    last_full_listing: float | None = None
    full: bool = False

    def due(self, model_id: str) -> bool:
        """Whether the model's re-check falls between the last run that listed every model and now; always with no
        period, and when that run's mark is from the future (a host clock that ran ahead)."""
        last = self.last_full_listing
        if self.full or self.period_seconds <= 0 or not isinstance(last, int | float) or last > self.now:
            return True
        return self.slot(model_id, self.now) > self.slot(model_id, last)

    def slot(self, model_id: str, moment: float) -> int:
        """Which of the model's re-check periods ``moment`` falls in; each model's periods start at its own phase."""
        phase = int.from_bytes(hashlib.blake2b(model_id.encode(), digest_size=4).digest()) / 2**32
        return math.floor((moment - phase * self.period_seconds) / self.period_seconds)
