"""Random event logs: the views agree with a plain-Python reading of the contract's definitions."""

from __future__ import annotations

import itertools
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.views import create_views
from tests.test_views import VIEWS, Event, events_table, hand_made, make_pipeline, model_rows, rows, ts

RANK = {
    "UNSPECIFIED": 0,
    "QUEUED": 1,
    "FINETUNING": 2,
    "DEPLOYING_API": 3,
    "READY": 4,
    "TEMPORARILY_OFFLINE": 5,
    "PAUSED": 6,
    "FAILED": 7,
    "DELETED": 8,
}
STATUSES = [f"STATUS_{status}" for status in RANK] + ["STATUS_BRAND_NEW", "odd_one"]
START = datetime(2026, 2, 1, tzinfo=UTC)
counter = itertools.count()


def short(status: str) -> str:
    upper = status.upper()
    return upper.removeprefix("STATUS_")


def expected_intervals(events: list[Event]) -> list[tuple[Any, ...]]:
    """(status, entered_at, exited_at, n_events, prev_status, next_status, entered_by) of one model's events."""
    ordered = sorted(events, key=lambda e: (ts(e[3]), RANK.get(short(e[2]), 9), e[2]))
    runs = [list(run) for _, run in itertools.groupby(ordered, key=lambda e: short(e[2]))]
    found = []
    for number, run in enumerate(runs):
        exited = ts(runs[number + 1][0][3]) if number + 1 < len(runs) else None
        previous = short(runs[number - 1][0][2]) if number else None
        following = short(runs[number + 1][0][2]) if number + 1 < len(runs) else None
        found.append((short(run[0][2]), ts(run[0][3]), exited, len(run), previous, following, run[0][1]))
    return found


def first_outcome(intervals: list[tuple[Any, ...]]) -> str:
    outcomes = {"READY": "ready", "FAILED": "failed", "DELETED": "cancelled"}
    return next((outcomes[i[0]] for i in intervals if i[0] in outcomes), "in_flight")


def wilson(failed: int, n: int) -> tuple[float, float]:
    z = 1.96
    p = failed / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, center - margin), min(1.0, center + margin)


@st.composite
def event_logs(draw: st.DrawFn) -> list[Event]:
    """A few models with a few events each, often at one timestamp, with repeats and odd statuses."""
    events: dict[tuple[str, str, str], Event] = {}
    for _ in range(draw(st.integers(1, 4))):
        model_id = f"model-{next(counter)}"
        for _ in range(draw(st.integers(1, 8))):
            moment = START + timedelta(
                minutes=30 * draw(st.integers(0, 12)), microseconds=draw(st.sampled_from([0, 500_000, 123_456]))
            )
            status = draw(st.sampled_from(STATUSES))
            user = draw(st.sampled_from([None, "u1", "u2"]))
            stamp = moment.isoformat().replace("+00:00", "Z")
            events[(model_id, stamp, status)] = (model_id, user, status, stamp)
    return list(events.values())


@pytest.fixture(scope="module")
def shared() -> Any:
    """One warehouse for every example (new model ids each time), its views made while it was empty."""
    with tempfile.TemporaryDirectory() as root:
        pipeline = make_pipeline(Path(root))
        assert create_views(pipeline) == VIEWS
        yield pipeline, []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(logs=event_logs())
def test_views_agree_with_python(shared: tuple[dlt.Pipeline, list[Event]], logs: list[Event]) -> None:
    pipeline, loaded = shared
    pipeline.run(hand_made(model_rows(logs, {}), events_table(logs)))
    loaded.extend(logs)
    outcomes: dict[str, str] = {}
    for model_id in dict.fromkeys(event[0] for event in logs):
        expected = expected_intervals([event for event in logs if event[0] == model_id])
        found = rows(pipeline, "status_intervals", where=f"finetuned_model_id = '{model_id}'", order="interval_seq")
        assert [
            (
                r["status"],
                r["entered_at"],
                r["exited_at"],
                r["n_events"],
                r["prev_status"],
                r["next_status"],
                r["entered_by"],
            )
            for r in found
        ] == expected
        for row, interval in zip(found, expected, strict=True):
            assert row["is_open"] == (interval[2] is None)
            if interval[2] is not None:
                assert row["duration_seconds"] == pytest.approx((interval[2] - interval[1]).total_seconds(), abs=1e-9)
        outcomes[model_id] = first_outcome(expected)
    found_outcomes = rows(pipeline, "model_lifecycle", "finetuned_model_id, first_outcome")
    every = {row["finetuned_model_id"]: row["first_outcome"] for row in found_outcomes}
    assert {model_id: every[model_id] for model_id in outcomes} == outcomes
    all_outcomes = [
        first_outcome(expected_intervals([e for e in loaded if e[0] == m])) for m in dict.fromkeys(e[0] for e in loaded)
    ]
    assert sorted(every.values()) == sorted(all_outcomes)
    (rates,) = rows(pipeline, "failure_rates")
    failed, ready = all_outcomes.count("failed"), all_outcomes.count("ready")
    assert (rates["models"], rates["ready"], rates["failed"], rates["cancelled"], rates["in_flight"]) == (
        len(all_outcomes),
        ready,
        failed,
        all_outcomes.count("cancelled"),
        all_outcomes.count("in_flight"),
    )
    if ready + failed:
        assert rates["failure_rate"] == pytest.approx(failed / (ready + failed))
        assert (rates["wilson_low"], rates["wilson_high"]) == pytest.approx(wilson(failed, ready + failed))
    else:
        assert (rates["failure_rate"], rates["wilson_low"], rates["wilson_high"]) == (None, None, None)
