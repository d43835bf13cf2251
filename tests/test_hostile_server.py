"""A hostile or broken server: looping pages, lockstep retries, HTML instead of JSON, 410, and the fake's switches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from tenacity import RetryCallState

from pipelines.providers.cohere.client import (
    ApiRetiredError,
    ClientSettings,
    FinetuningClient,
    MalformedResponseError,
    RetryableError,
)
from pipelines.providers.cohere.simulator import DEFAULT_API_KEY, MODELS_PATH
from tests.support import Fake, ForwardProxy, cli, empty_model, expected_events, warehouse_events

LIST_PAGE = 12  # 25 models: three pages of the model list, and every model's events on one page


def one_line_error(result: Any) -> str:
    """The run failed with exit 1 and exactly one line on stderr; returns it."""
    assert result.exit_code == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def assert_next_run_loads_everything(fake: Fake) -> None:
    result = cli("run")
    assert result.exit_code == 0, result.stderr
    rows = warehouse_events()
    assert len(rows) == len(set(rows))
    assert set(rows) == expected_events(fake.world)


def settings(fake: Fake, **extra: Any) -> ClientSettings:
    return ClientSettings(base_url=fake.url, api_key=DEFAULT_API_KEY, requests_per_minute=0, **extra)


def busiest_model(fake: Fake) -> str:
    return max(fake.world.models, key=lambda model_id: len(fake.world.events_of(model_id)))


async def all_event_pages(client_settings: ClientSettings, model_id: str) -> list[tuple[int, list[dict[str, Any]]]]:
    async with FinetuningClient(client_settings) as client:
        return [page async for page in client.event_pages(model_id)]


async def all_metric_pages(client_settings: ClientSettings, model_id: str) -> list[tuple[int, list[dict[str, Any]]]]:
    async with FinetuningClient(client_settings) as client:
        return [page async for page in client.metric_pages(model_id)]


# 1. A listing that never ends


def test_a_model_list_that_repeats_its_page_token_stops_the_run(fake: Fake) -> None:
    fake.api.faults.stuck_paging = "same-token"
    line = one_line_error(cli("run", "--page-size", str(LIST_PAGE)))
    assert line.startswith("error: the API repeated page token ")
    assert "for the model list at page 2 (a looping server or caching proxy); stopped paging" in line
    fake.api.faults.stuck_paging = None
    assert_next_run_loads_everything(fake)


def test_a_model_list_that_serves_page_one_again_stops_the_run(fake: Fake) -> None:
    fake.api.faults.stuck_paging = "same-page"
    line = one_line_error(cli("run", "--page-size", str(LIST_PAGE)))
    assert line == (
        "error: the API served the same page again for the model list at page 2 "
        "(a looping server or caching proxy); stopped paging"
    )
    fake.api.faults.stuck_paging = None
    assert_next_run_loads_everything(fake)


@pytest.mark.parametrize("stuck", ["same-token", "same-page"])
def test_events_that_page_forever_stop_the_run_naming_the_model(fake: Fake, stuck: str) -> None:
    model = busiest_model(fake)
    fake.api.faults.stuck_paging = stuck
    # the events alone: the model's metrics listing loops too, and whichever fails first would name itself
    line = one_line_error(cli("run", "--model-id", model, "--page-size", "2", "--no-metrics"))
    assert f"for model {model} at page 2 (a looping server or caching proxy); stopped paging" in line
    fake.api.faults.stuck_paging = None
    assert_next_run_loads_everything(fake)


def test_a_listing_longer_than_max_pages_stops(fake: Fake) -> None:
    model = busiest_model(fake)
    assert len(fake.world.events_of(model)) > 6
    with pytest.raises(MalformedResponseError) as failure:
        asyncio.run(all_event_pages(settings(fake, page_size=2, max_pages=3), model))
    assert str(failure.value) == (
        f"the API served more than 3 pages for model {model}; stopped paging at page 3 "
        "(a looping server or caching proxy?)"
    )
    pages = asyncio.run(all_event_pages(settings(fake, page_size=2, max_pages=100), model))
    assert sum(len(events) for _, events in pages) == len(fake.world.events_of(model))


def test_training_step_metrics_page_without_order_by_newest_step_first(fake: Fake, monkeypatch) -> None:
    model = next(m for m in fake.world.models if any(e.status == "STATUS_FINETUNING" for e in fake.world.events_of(m)))
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        pages = asyncio.run(all_metric_pages(settings(fake, page_size=2), model))
    assert [number for number, _ in pages] == list(range(1, len(pages) + 1))
    assert len(pages) > 1
    steps = [metric.get("step_number", 0) for _, metrics in pages for metric in metrics]
    assert steps == sorted(steps, reverse=True) and steps[-1] == 0
    assert all("/training-step-metrics?" in url for url in proxy.urls)
    assert not any("order_by" in url for url in proxy.urls)
    assert all("page_size=2" in url for url in proxy.urls)
    monkeypatch.delenv("HTTP_PROXY")
    fake.api.faults.stuck_paging = "same-token"
    with pytest.raises(MalformedResponseError, match=r"repeated page token .* at page 2"):
        asyncio.run(all_metric_pages(settings(fake, page_size=2), model))


# 2. Retries in lockstep


def test_a_server_failing_every_fifth_request_does_not_fail_the_run(fake: Fake) -> None:
    fake.api.faults.fault_every = 5
    models = list(fake.world.models)[:6]
    args = [arg for model in models for arg in ("--model-id", model)]
    result = cli("run", *args, "--requests-per-minute", "500")  # Cohere's limit, the CLI's default
    assert result.exit_code == 0, result.stderr
    assert fake.api.stats.errors_sent.get(429, 0) >= 2
    loaded = set(warehouse_events())
    assert loaded == {row for row in expected_events(fake.world) if row[0] in models}


def test_retry_after_is_honoured_with_jitter_never_sooner_never_past_the_cap(fake: Fake) -> None:
    client = FinetuningClient(settings(fake, max_backoff_seconds=60))

    def wait_for(retry_after: float) -> float:
        state = RetryCallState(None, None, (), {})
        error = RetryableError("HTTP 429 for the model list, page 1", retry_after)
        state.set_exception((RetryableError, error, None))
        return client.backoff(state)

    waits = [wait_for(1.0) for _ in range(200)]
    assert all(1.0 <= wait <= 1.5 for wait in waits)
    assert len(set(waits)) > 100  # spread out: clients told the same moment do not come back in lockstep
    assert wait_for(100.0) == 60.0


# 3. A 200 that is not JSON


def test_an_html_login_page_names_the_content_type_and_its_start(fake: Fake) -> None:
    model = next(iter(fake.world.models))
    fake.api.inject(f"{model}/events", "html")
    line = one_line_error(cli("run"))
    assert line.startswith(
        f"error: malformed response for model {model}, page 1: expected JSON, got text/html: "
        "'<!DOCTYPE html><html><head><title>Sign in"
    )
    assert_next_run_loads_everything(fake)


def test_truncated_json_still_names_model_and_page(fake: Fake) -> None:
    model = next(iter(fake.world.models))
    fake.api.inject(f"{model}/events", "malformed")
    assert one_line_error(cli("run")) == f"error: malformed JSON in the response for model {model}, page 1"


def test_the_key_never_appears_in_a_non_json_answer(fake: Fake) -> None:
    key = "DOCTYPE"  # a key that the login page happens to contain
    fake.api.api_key = key
    model = next(iter(fake.world.models))
    fake.api.inject(f"{model}/events", "html")
    with pytest.raises(MalformedResponseError) as failure:
        asyncio.run(all_event_pages(ClientSettings(base_url=fake.url, api_key=key), model))
    assert key not in str(failure.value)
    assert "got text/html: '<!*** html><html>" in str(failure.value)


# 4. 410 means the API is gone


def test_410_on_a_named_model_is_the_retired_api(fake: Fake) -> None:
    model = next(iter(fake.world.models))
    fake.api.inject(f"{MODELS_PATH}/{model}", 410)
    line = one_line_error(cli("run", "--model-id", model))
    assert "HTTP 410" in line and "404" not in line
    assert "retired fine-tuning on 2025-09-15" in line and "CO_API_URL" in line


def test_410_on_one_models_events_fails_the_run(fake: Fake) -> None:
    model = list(fake.world.models)[3]
    fake.api.inject(f"{model}/events", 410)
    line = one_line_error(cli("run"))
    assert f"HTTP 410 for model {model}, page 1" in line
    assert "retired fine-tuning on 2025-09-15" in line
    assert_next_run_loads_everything(fake)


def test_404_on_a_named_model_is_still_skipped(fake: Fake) -> None:
    first, second = list(fake.world.models)[:2]
    fake.api.inject(f"{MODELS_PATH}/{first}", 404)
    result = cli("run", "--model-id", first, "--model-id", second)
    assert result.exit_code == 0, result.stderr
    assert f"model {first} not found" in result.stdout
    assert {row[0] for row in warehouse_events()} == {second}


def test_410_is_api_retired_error_with_its_real_status(fake: Fake) -> None:
    model = next(iter(fake.world.models))
    fake.api.inject(f"{model}/events", 410)
    with pytest.raises(ApiRetiredError, match=r"HTTP 410 for model .*, page 1"):
        asyncio.run(all_event_pages(settings(fake), model))


# 6. The simulated API's switches do what they say


def get(fake: Fake, path: str, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    return httpx.get(fake.url + path, params=params, headers=headers)


def page_through(fake: Fake, path: str, key: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages, token = [], None
    while True:
        body = get(fake, path, **params, **({"page_token": token} if token else {})).json()
        pages.append(body[key])
        token = body.get("next_page_token")
        if not token or len(pages) > 50:
            return pages


def stamps(items: list[dict[str, Any]]) -> list[str]:
    return [item["created_at"] for item in items]


def test_switch_fault_every(fake: Fake) -> None:
    fake.api.faults.fault_every = 3
    fake.api.faults.fault_status = 503
    answers = [get(fake, MODELS_PATH) for _ in range(7)]
    assert [a.status_code for a in answers] == [200, 200, 503, 200, 200, 503, 200]
    assert answers[2].headers["Retry-After"] == "1"


def test_switch_stuck_paging(fake: Fake) -> None:
    fake.api.faults.stuck_paging = "same-token"
    first = get(fake, MODELS_PATH, page_size=5).json()
    second = get(fake, MODELS_PATH, page_size=5, page_token=first["next_page_token"]).json()
    assert second["next_page_token"] == first["next_page_token"]
    assert second["finetuned_models"] != first["finetuned_models"]
    fake.api.faults.stuck_paging = "same-page"
    first = get(fake, MODELS_PATH, page_size=5).json()
    second = get(fake, MODELS_PATH, page_size=5, page_token=first["next_page_token"]).json()
    assert second["finetuned_models"] == first["finetuned_models"]
    assert second["next_page_token"] not in ("", None, first["next_page_token"])


def test_switch_html(fake: Fake) -> None:
    fake.api.inject(MODELS_PATH, "html")
    answer = get(fake, MODELS_PATH)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert answer.text.startswith("<!DOCTYPE html><html><head><title>Sign in")
    assert get(fake, MODELS_PATH).headers["content-type"] == "application/json"


def test_switch_ignore_order_by_for_events(fake: Fake) -> None:
    model = busiest_model(fake)
    path = f"{MODELS_PATH}/{model}/events"
    oldest_first = [e.to_json()["created_at"] for e in fake.world.events_of(model)]
    assert stamps(get(fake, path, page_size=100, order_by="created_at desc").json()["events"]) == oldest_first[::-1]
    fake.api.faults.ignore_order_by = "asc"
    assert stamps(get(fake, path, page_size=100, order_by="created_at desc").json()["events"]) == oldest_first
    fake.api.faults.ignore_order_by = "unordered"
    shuffled = stamps(get(fake, path, page_size=100, order_by="created_at desc").json()["events"])
    assert sorted(shuffled) == sorted(oldest_first) and shuffled not in (oldest_first, oldest_first[::-1])
    assert stamps(get(fake, path, page_size=100, order_by="created_at").json()["events"]) == shuffled
    fake.api.faults.ignore_order_by = "mixed"
    pages = [stamps(page) for page in page_through(fake, path, "events", page_size=3, order_by="created_at desc")]
    assert pages[0] == oldest_first[::-1][:3]  # the newest three, newest first
    assert pages[1] == oldest_first[:3]  # then the oldest three, oldest first
    assert sorted(s for page in pages for s in page) == sorted(oldest_first)


def test_switch_ignore_order_by_for_metrics(fake: Fake) -> None:
    model = busiest_model(fake)
    path = f"{MODELS_PATH}/{model}/training-step-metrics"

    def steps() -> list[int]:
        return [m.get("step_number", 0) for page in page_through(fake, path, "step_metrics", page_size=2) for m in page]

    served = steps()
    assert len(served) > 2 and served == sorted(served, reverse=True)  # newest step first
    fake.api.faults.ignore_order_by = "asc"
    assert steps() == sorted(served)
    fake.api.faults.ignore_order_by = "mixed"
    mixed = steps()
    assert mixed[:2] == sorted(served, reverse=True)[:2] and mixed[2:4] == sorted(served)[:2]
    assert sorted(mixed) == sorted(served)


def test_switch_add_event_with_nanoseconds(fake: Fake) -> None:
    model = empty_model(fake.world, "nanos-model")
    moment = datetime(2026, 3, 1, 0, 0, 0, 123456, tzinfo=UTC)
    fake.world.add_event(model.id, "STATUS_READY", moment, digits=9, nanos=789)
    fake.world.add_event(model.id, "STATUS_QUEUED", moment, digits=9, nanos=1)
    events = get(fake, f"{MODELS_PATH}/{model.id}/events", order_by="created_at").json()["events"]
    assert [(e["status"], e["created_at"]) for e in events] == [
        ("STATUS_QUEUED", "2026-03-01T00:00:00.123456001Z"),
        ("STATUS_READY", "2026-03-01T00:00:00.123456789Z"),
    ]
    with pytest.raises(ValueError):
        fake.world.add_event(model.id, "STATUS_READY", moment, digits=6, nanos=5)


def test_switch_shift_list(fake: Fake) -> None:
    fake.api.faults.shift_list = 2
    pages = page_through(fake, MODELS_PATH, "finetuned_models", page_size=5)
    ids = [[model["id"] for model in page] for page in pages]
    assert ids[1][:2] == ids[0][-2:] and ids[2][:2] == ids[1][-2:]
    everything = [body["id"] for body in fake.world.model_list()]
    served = [model_id for page in ids for model_id in page]
    assert sorted(set(served)) == sorted(everything)
    assert len(served) > len(everything)
