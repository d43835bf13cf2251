"""The simulated API is faithful: the official Cohere SDK parses every response, and the quirks are there."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import cohere
import httpx
import pytest

from pipelines.fake_api import DEFAULT_API_KEY, FakeApiServer, FakeCohereApi, Faults, World
from tests.support import NOW


@pytest.fixture(scope="module")
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer(FakeCohereApi(World(models=40, seed=9, now=NOW, long_history=30))) as running:
        yield running


@pytest.fixture
def http(server: FakeApiServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        yield client


def sdk(server: FakeApiServer, key: str = DEFAULT_API_KEY) -> cohere.Client:
    return cohere.Client(api_key=key, base_url=server.url)


def test_the_official_sdk_parses_every_response(server: FakeApiServer) -> None:
    client = sdk(server)
    models, token = [], None
    while True:
        page = client.finetuning.list_finetuned_models(page_size=7, page_token=token, order_by="created_at")
        models += page.finetuned_models or []
        token = page.next_page_token
        if not token:
            break
    world = server.api.world
    assert [m.id for m in models] == [body["id"] for body in world.model_list()]
    statuses: Counter[str] = Counter()
    for model in models:
        assert model.id is not None
        one = client.finetuning.get_finetuned_model(model.id).finetuned_model
        assert one is not None and one.settings.base_model.base_type.startswith("BASE_TYPE_")
        events, token = [], None
        while True:
            page = client.finetuning.list_events(model.id, page_size=3, page_token=token, order_by="created_at desc")
            events += page.events or []
            token = page.next_page_token
            if not token:
                break
        assert len(events) == len(world.events_of(model.id))
        assert [e.created_at for e in events] == sorted((e.created_at for e in events), reverse=True)
        statuses.update(str(e.status) for e in events)
        metrics = client.finetuning.list_training_step_metrics(model.id, page_size=2)
        assert metrics.step_metrics is not None
    assert {"STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_READY"} <= set(statuses)


def test_the_sdk_sees_401_for_a_wrong_key(server: FakeApiServer) -> None:
    with pytest.raises(cohere.errors.UnauthorizedError):
        sdk(server, "wrong").finetuning.list_finetuned_models()


def test_the_world_tells_realistic_stories(server: FakeApiServer) -> None:
    world = server.api.world
    finals = Counter(world.events_of(model_id)[-1].status for model_id in world.models)
    assert finals["STATUS_READY"] > 10
    assert finals["STATUS_FAILED"] >= 1 and finals["STATUS_QUEUED"] + finals["STATUS_FINETUNING"] >= 1
    everything = [e.status for model_id in world.models for e in world.events_of(model_id)]
    assert {"STATUS_DELETED", "STATUS_TEMPORARILY_OFFLINE", "STATUS_PAUSED"} & set(everything)


def test_quirks_omitted_fields_mixed_precision_and_opaque_tokens(server: FakeApiServer, http: httpx.Client) -> None:
    digits: Counter[int] = Counter()
    missing_user = 0
    for model_id in list(server.api.world.models)[:20]:
        body = http.get(f"/v1/finetuning/finetuned-models/{model_id}/events", params={"page_size": 1000}).json()
        for event in body["events"]:
            fraction = re.search(r"\.(\d+)Z$", event["created_at"])
            digits[len(fraction.group(1)) if fraction else 0] += 1
            missing_user += "user_id" not in event
    assert set(digits) == {0, 3, 6, 9}
    assert missing_user > 0
    page = http.get("/v1/finetuning/finetuned-models", params={"page_size": 5}).json()
    token = page["next_page_token"]
    assert token and not token.isdigit()
    assert http.get("/v1/finetuning/finetuned-models", params={"page_token": "garbage!"}).status_code == 400


def test_page_size_zero_means_fifty_and_order_defaults_to_ascending(server: FakeApiServer, http: httpx.Client) -> None:
    world = server.api.world
    model_id = max(world.models, key=lambda m: len(world.events_of(m)))
    assert len(world.events_of(model_id)) > 50
    body = http.get(f"/v1/finetuning/finetuned-models/{model_id}/events", params={"page_size": 0}).json()
    served = [(e["status"], e["created_at"]) for e in body["events"]]
    oldest = [e.to_json() for e in world.events_of(model_id)[:50]]
    assert served == [(e["status"], e["created_at"]) for e in oldest]
    assert http.get("/v1/finetuning/finetuned-models", params={"order_by": "name"}).status_code == 400


def test_errors_use_the_message_body() -> None:
    api = FakeCohereApi(World(models=2, now=NOW), faults=Faults(rate_limit_rpm=60))
    with FakeApiServer(api) as running, httpx.Client(base_url=running.url) as client:
        refused = client.get("/v1/finetuning/finetuned-models")
        assert refused.status_code == 401 and refused.json()["message"] == "invalid api token"
        client.headers["Authorization"] = f"Bearer {DEFAULT_API_KEY}"
        missing = client.get("/v1/finetuning/finetuned-models/nope")
        assert missing.status_code == 404 and missing.json()["message"] == "finetuned model nope not found"
        answers = [client.get("/v1/finetuning/finetuned-models") for _ in range(4)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited, "a burst over 60 requests per minute must meet the server's limit"
    assert limited[0].json()["message"].startswith("You are past the per minute request limit")
    assert float(limited[0].headers["Retry-After"]) >= 1


def test_time_passing_reveals_new_events() -> None:
    world = World.timeline(models=30, now=NOW)
    before = world.event_count()
    added = world.advance(10 * 86400)
    assert added > 0 and world.event_count() == before + added
