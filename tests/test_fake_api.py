"""The simulated API is faithful: the official Cohere SDK parses every response, and the quirks are there."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import cohere
import httpx
import pytest

from pipelines.providers.cohere.simulator import (
    DEFAULT_API_KEY,
    FakeApiServer,
    FakeCohereApi,
    Faults,
    World,
    training_span,
)
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


def non_finite(steps: list[tuple[int, datetime, dict[str, float]]]) -> list[float]:
    return [value for _, _, metrics in steps for value in metrics.values() if not math.isfinite(value)]


@pytest.fixture(scope="module")
def metrics_world() -> World:
    """Enough models that some of them diverged (about one in twenty)."""
    return World(models=120, seed=3, now=NOW)


def test_the_sdk_parses_training_step_metrics_with_non_finite_values(metrics_world: World) -> None:
    world = metrics_world
    diverged = [model_id for model_id in world.models if non_finite(world.metrics_of(model_id))]
    assert diverged, "some simulated trainings diverge"
    never_trained = next(m for m in world.models.values() if training_span(m.events) is None).id
    with FakeApiServer(FakeCohereApi(world)) as running:
        client = sdk(running)
        assert client.finetuning.list_training_step_metrics(never_trained).step_metrics == []
        for model_id in diverged[:3] + list(world.models)[:5]:
            served, token = [], None
            while True:
                page = client.finetuning.list_training_step_metrics(model_id, page_size=7, page_token=token)
                served += page.step_metrics or []
                token = page.next_page_token
                if not token:
                    break
            # the SDK's pydantic model turns the strings "NaN", "Infinity" and "-Infinity" into float doubles
            got = sorted(
                ((s.step_number or 0, s.created_at, dict(s.metrics or {})) for s in served), key=lambda s: s[0]
            )
            expected = world.metrics_of(model_id)
            assert [(step, at) for step, at, _ in got] == [(step, at) for step, at, _ in expected]
            for (_, _, sdk_metrics), (_, _, metrics) in zip(got, expected, strict=True):
                assert sdk_metrics.keys() == metrics.keys()
                for name, value in metrics.items():
                    assert isinstance(sdk_metrics[name], float)
                    assert sdk_metrics[name] == value or (math.isnan(value) and math.isnan(sdk_metrics[name]))
            if model_id in diverged:
                assert non_finite([(0, NOW, m) for _, _, m in got])


def test_metrics_are_protobuf_json(metrics_world: World) -> None:
    world = metrics_world
    diverged = next(m for m in world.models if non_finite(world.metrics_of(m)))
    api = FakeCohereApi(world)
    with FakeApiServer(api) as running, httpx.Client(base_url=running.url) as client:
        client.headers["Authorization"] = f"Bearer {DEFAULT_API_KEY}"
        digits: Counter[int] = Counter()
        for model_id in [diverged, *list(world.models)[:20]]:
            url = f"/v1/finetuning/finetuned-models/{model_id}/training-step-metrics"
            items = client.get(url, params={"page_size": 1000}).json()["step_metrics"]
            for item in items:
                fraction = re.search(r"\.(\d+)Z$", item["created_at"])
                digits[len(fraction.group(1)) if fraction else 0] += 1
                assert item.get("step_number") != 0  # step 0 leaves the field out, as proto3 JSON does
                for value in item["metrics"].values():
                    assert isinstance(value, float) or value in ("NaN", "Infinity", "-Infinity")
            assert sum("step_number" not in item for item in items) == min(1, len(items))
            if model_id == diverged:
                strings = [v for item in items for v in item["metrics"].values() if isinstance(v, str)]
                assert strings and set(strings) <= {"NaN", "Infinity"}
        assert set(digits) == {0, 3, 6, 9}


def test_curves_per_base_type_look_like_training(metrics_world: World) -> None:
    world = metrics_world
    names: dict[str, set[str]] = {}
    for model_id, model in world.models.items():
        steps = world.metrics_of(model_id)
        if not steps:
            continue
        base_type = model.body["settings"]["base_model"]["base_type"]
        names.setdefault(base_type, set()).update(steps[0][2])
        numbers = [step for step, _, _ in steps]
        assert numbers[0] == 0 and numbers == sorted(set(numbers))
        assert [at for _, at, _ in steps] == sorted(at for _, at, _ in steps)
        if len(steps) >= 5 and not non_finite(steps):
            first, last = steps[0][2], steps[-1][2]
            score = "accuracy_at_1" if base_type == "BASE_TYPE_RERANK" else "accuracy"
            assert last[score] > first[score]
            assert 0 <= last[score] <= 1
            if "cross_entropy" in last:
                assert last["cross_entropy"] < first["cross_entropy"]
    assert names == {
        "BASE_TYPE_CHAT": {"accuracy", "cross_entropy"},
        "BASE_TYPE_GENERATIVE": {"accuracy", "cross_entropy"},
        "BASE_TYPE_CLASSIFICATION": {"accuracy", "f1", "precision", "recall"},
        "BASE_TYPE_RERANK": {"accuracy_at_1", "accuracy_at_3", "mrr_at_10"},
    }
    again = World(models=120, seed=3, now=NOW)
    assert all(repr(again.metrics_of(m)) == repr(world.metrics_of(m)) for m in world.models)  # deterministic


def test_metrics_grow_while_training_and_stop_when_it_ends() -> None:
    world = World(models=30, seed=5, now=NOW)
    model = next(m for m in world.models.values() if training_span(m.events) and len(world.metrics_of(m.id)) > 10)
    start, end = training_span(model.events) or (NOW, NOW)
    after = next(e for e in model.events if e.created_at > start and e.status != "STATUS_FINETUNING")
    assert after.created_at == end  # training ends at the model's first event after FINETUNING
    world.now = start + (end - start) / 2
    halfway = world.metrics_of(model.id)
    assert len(halfway) > 0 and all(at <= world.now for _, at, _ in halfway)
    world.advance((end - world.now).total_seconds())
    finished = world.metrics_of(model.id)
    assert len(finished) > len(halfway) and finished[: len(halfway)] == halfway
    assert finished[-1][1] <= end
    world.advance(30 * 86400)
    assert world.metrics_of(model.id) == finished  # nothing more once training is over
