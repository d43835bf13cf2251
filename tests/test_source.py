"""How one page of events becomes a typed Arrow table: the timestamps and fields the API really sends."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from pipelines import arrow
from pipelines.providers.cohere.client import MalformedResponseError
from pipelines.providers.cohere.source import EVENTS_SCHEMA, events_table, pages_table

MIDNIGHT = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stamp", "micros"),
    [
        ("2025-03-01T00:00:00Z", 0),
        ("2025-03-01T00:00:00.5Z", 500_000),
        ("2025-03-01T00:00:00.123Z", 123_000),
        ("2025-03-01T00:00:00.123456Z", 123_456),
        ("2025-03-01T00:00:00.123456789Z", 123_456),  # nanoseconds are truncated: warehouses keep microseconds
        ("2025-03-01T02:00:00.25+02:00", 250_000),  # any offset, converted to UTC
        ("2025-03-01t00:00:00.75z", 750_000),  # RFC 3339 allows lower case
        ("2025-03-01T00:00:00", 0),  # no offset: the API's timestamps are UTC
    ],
)
def test_timestamps_parse_to_utc_microseconds(stamp: str, micros: int) -> None:
    table, times, keys = events_table("m-1", [{"status": "STATUS_READY", "created_at": stamp}], "model m-1, page 1")
    assert table.schema == EVENTS_SCHEMA
    assert table.column("created_at").type == pa.timestamp("us", tz="UTC")
    assert table.column("created_at")[0].as_py() == MIDNIGHT.replace(microsecond=micros)
    assert times == [int(MIDNIGHT.timestamp()) * 1_000_000 + micros]
    assert keys == [(times[0], "STATUS_READY")]


def test_omitted_fields_load_as_the_api_means_them() -> None:
    table, _, _ = events_table("m-1", [{"created_at": "2025-03-01T00:00:00Z", "user_id": ""}], "model m-1, page 1")
    assert table.to_pylist() == [
        {"finetuned_model_id": "m-1", "user_id": None, "status": "STATUS_UNSPECIFIED", "created_at": MIDNIGHT}
    ]


@pytest.mark.parametrize(
    "event",
    [
        {"status": "STATUS_READY"},
        {"status": 3, "created_at": "2025-03-01T00:00:00Z"},
        {"created_at": 1740787200},
        {"created_at": "2025-03-01T00:00:00Z", "user_id": 7},
    ],
)
def test_events_without_a_usable_time_or_status_are_malformed(event: dict[str, object]) -> None:
    good = {"status": "STATUS_READY", "created_at": "2025-03-01T00:00:00Z"}
    with pytest.raises(MalformedResponseError, match=r"malformed event in model m-1, page 2: \{") as raised:
        events_table("m-1", [good, event], "model m-1, page 2")
    assert repr(event)[:40] in str(raised.value)  # names the bad event, not the first one


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"status": 3, "created_at": "2025-03-01T00:00:00Z"}, "malformed event in model m-1, page 3"),
        ({"status": "STATUS_READY", "created_at": "yesterday at noon"}, "malformed created_at in model m-1, page 3"),
    ],
)
def test_pages_built_together_still_name_the_page_of_a_bad_event(bad: dict[str, object], message: str) -> None:
    """A model's first read builds its rows several pages at a time; a bad event is still named by its page."""
    pages = [
        (f"model m-1, page {number}", [{"status": "STATUS_READY", "created_at": f"2025-03-0{number}T00:00:00Z"}])
        for number in (1, 2)
    ]
    table, times, keys = pages_table("m-1", pages)
    assert table.num_rows == 2 and len(times) == len(keys) == 2
    with pytest.raises(MalformedResponseError, match=message):
        pages_table("m-1", [*pages, ("model m-1, page 3", [bad])])


@pytest.mark.parametrize(
    "values",
    [[], ["a"], ["", "ü", None, "STATUS_READY"], [None] * 9, ["x" * 1000, None, "z"] * 5],
)
def test_arrow_strings_match_what_pyarrow_builds(values: list[str | None]) -> None:
    built = arrow.strings(values)
    built.validate(full=True)
    assert built.equals(pa.array(values, pa.string()))


@pytest.mark.parametrize(("value", "count"), [("ft-1", 3), ("ü", 2), ("", 4), ("x", 0)])
def test_arrow_repeated_matches_what_pyarrow_builds(value: str, count: int) -> None:
    built = arrow.repeated(value, count)
    built.validate(full=True)
    assert built.equals(pa.array([value] * count, pa.string()))


def test_arrow_int64s_carry_timestamps() -> None:
    built = arrow.int64s([0, 1_500_000], arrow.UTC_MICROS)
    assert built.to_pylist() == [datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 0, 0, 1, 500_000, tzinfo=UTC)]


def test_rows_closed_early_never_leave_their_producer_hanging(tmp_path, monkeypatch) -> None:
    """dlt closes a resource's generator when another part of the run fails. Its producer may then sit on a full
    queue; cancelling it must not wait for a reader that is gone."""
    import asyncio
    from types import SimpleNamespace

    import dlt

    from pipelines import extract
    from pipelines.changes import ModelRef
    from pipelines.extract import ModelFeed, RunReport, fan_out

    monkeypatch.setattr(extract, "BATCH_ROWS", 10)
    dlt.pipeline("fan_out_test", pipelines_dir=str(tmp_path), destination="duckdb")  # the current pipeline
    row = pa.table({"n": [1]})

    async def fetch(api: object, model: ModelRef, out: asyncio.Queue[pa.Table | None]) -> None:
        for _ in range(1000):
            await out.put(row)

    async def close_early() -> int:
        feed = ModelFeed()
        feed.publish([ModelRef(f"m-{index}", "STATUS_READY", None) for index in range(4)])
        feed.close()
        api = SimpleNamespace(settings=SimpleNamespace(concurrency=1))
        rows = fan_out(api, feed, lambda model: True, fetch, "events of model", RunReport())  # type: ignore[arg-type]
        first = await anext(rows)
        await asyncio.sleep(0.1)  # the producer fills the queue
        await asyncio.wait_for(rows.aclose(), timeout=10)
        return first.num_rows

    assert asyncio.run(close_early()) == 10
