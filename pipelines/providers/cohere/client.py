"""Cohere's fine-tuning API: the model list, a model, its events and training-step metrics, paged by token."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from pipelines.changes import ModelRef
from pipelines.headstart import read_each
from pipelines.http import (
    MAX_PAGES,
    SIMULATED_HEADER,
    ApiClient,
    ApiError,
    AuthError,
    ClientSettings,
    MalformedResponseError,
    NotFoundError,
    RequestStats,
    RetryableError,
    SharedLimits,
    checked_id,
    objects,
)

__all__ = [
    "MAX_PAGES",
    "SIMULATED_HEADER",
    "ApiRetiredError",
    "AuthError",
    "ClientSettings",
    "CohereApiError",
    "FinetuningClient",
    "MalformedResponseError",
    "ModelNotFoundError",
    "RequestStats",
    "RetryableError",
    "SharedLimits",
]

MODELS_PATH = "/v1/finetuning/finetuned-models"
QUEUED = "STATUS_QUEUED"  # a queued model that never had metrics has none yet
SAME_ITEM_PAGES = 16  # one-item pages served the same this many times more in a row: a loop, not twin events
LOOPING = "(a looping server or caching proxy)"
RETIRED = "Cohere retired fine-tuning on 2025-09-15; point CO_API_URL at a deployment that still serves it"

CohereApiError = ApiError
ModelNotFoundError = NotFoundError


class ApiRetiredError(ApiError):
    """The fine-tuning API is gone: 410 anywhere, or 404 on the model list. Cohere retired fine-tuning in 2025."""


class FinetuningClient(ApiClient):
    """Pages through fine-tuned models and their events. Use ``async with``; one instance per event loop."""

    key_hint = "CO_API_KEY"

    async def list_model_pages(self) -> AsyncIterator[list[dict[str, Any]]]:
        """Every fine-tuned model, a page at a time, oldest first, with the W&B key removed."""
        try:
            async for number, models in self.pages(MODELS_PATH, "finetuned_models", "the model list"):
                yield [checked_id(scrub_model(model), f"the model list, page {number}", "model") for model in models]
        except ModelNotFoundError as error:
            raise ApiRetiredError(f"the fine-tuning API answered {error}: {RETIRED}") from None

    async def head_start(self, first_load: bool, metrics: bool) -> None:
        """Every page of the model list; on a first load, every model's events, and its metrics unless it is queued
        and never started: what the source reads first (see source.what_to_read)."""

        async def read(model: dict[str, Any]) -> None:
            async for _ in self.event_pages(model["id"]):
                pass
            if metrics and not never_started(ModelRef.of(model)):
                async for _ in self.metric_pages(model["id"]):
                    pass

        await read_each(self.list_model_pages(), read, self.settings.concurrency if first_load else 0)

    async def get_model(self, model_id: str) -> dict[str, Any]:
        """One fine-tuned model, with the W&B key removed; raises ModelNotFoundError on 404, ApiRetiredError on 410."""
        body = await self.get_json(f"{MODELS_PATH}/{quote(model_id, safe='')}", {}, f"model {model_id}")
        model = body.get("finetuned_model")
        if not isinstance(model, dict):
            raise MalformedResponseError(f"malformed response for model {model_id}: no finetuned_model object")
        return checked_id(scrub_model(model), f"model {model_id}", "model")

    async def event_pages(self, model_id: str) -> AsyncGenerator[tuple[int, list[dict[str, Any]]]]:
        """A model's status events newest first, as (page number, events); stop iterating to stop paging."""
        path = f"{MODELS_PATH}/{quote(model_id, safe='')}/events"
        async for number, events in self.pages(path, "events", f"model {model_id}", order="created_at desc"):
            yield number, events

    async def metric_pages(self, model_id: str) -> AsyncGenerator[tuple[int, list[dict[str, Any]]]]:
        """A model's training-step metrics as (page number, step metrics), in the order the API serves them (it
        documents newest step first; the endpoint takes no order_by); stop iterating to stop paging."""
        path = f"{MODELS_PATH}/{quote(model_id, safe='')}/training-step-metrics"
        what = f"training-step metrics of model {model_id}"
        async for number, metrics in self.pages(path, "step_metrics", what, order=None):
            yield number, metrics

    async def pages(
        self, path: str, items_key: str, what: str, order: str | None = "created_at"
    ) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
        """Every page of a listing as (page number, items), sending ``order`` as order_by unless it is None.

        A listing that repeats a page token, serves the same page twice in a row, or runs past ``max_pages``
        raises MalformedResponseError instead of paging forever.
        """
        token: str | None = None
        tokens: set[str] = set()
        previous, repeats = b"", 0
        for number in range(1, self.settings.max_pages + 1):
            params: dict[str, Any] = {"page_size": self.settings.page_size}
            if order is not None:
                params["order_by"] = order
            if token:
                params["page_token"] = token
            where = f"{what}, page {number}"
            body = await self.get_json(path, params, where)
            items = objects(body, items_key, where)
            token = body.get("next_page_token") or None  # absent, null and "" all end the listing
            if token is not None and not isinstance(token, str):
                raise MalformedResponseError(f"malformed response for {where}: next_page_token is not a string")
            if items:
                # a snapshot, not the items: the consumer may change them (the W&B key is removed)
                snapshot = orjson.dumps(items)
                repeats = repeats + 1 if snapshot == previous else 0
                # a page of one item may truly repeat (twin events at page size 1); a longer page never does
                if repeats >= (1 if len(items) > 1 else SAME_ITEM_PAGES):
                    raise MalformedResponseError(
                        f"the API served the same page again for {what} at page {number} {LOOPING}; stopped paging"
                    )
                previous = snapshot
            if token in tokens:
                raise MalformedResponseError(
                    f"the API repeated page token {self.redact(token or '')[:24]!r} for {what} at page {number} "
                    f"{LOOPING}; stopped paging"
                )
            yield number, items
            if token is None:
                return
            tokens.add(token)
        raise MalformedResponseError(
            f"the API served more than {self.settings.max_pages} pages for {what}; stopped paging at page "
            f"{self.settings.max_pages} (a looping server or caching proxy?)"
        )

    def error_for(self, response: httpx.Response, where: str) -> ApiError:
        if response.status_code == 410:
            message = super().error_for(response, where)
            return ApiRetiredError(f"the fine-tuning API answered {message}: {RETIRED}")
        return super().error_for(response, where)


def never_started(model: ModelRef) -> bool:
    """A queued model the listing shows never started: it has no metrics, unless an earlier read found some."""
    return model.status == QUEUED and not model.started


def scrub_model(model: dict[str, Any]) -> dict[str, Any]:
    """Remove the Weights & Biases key that the API returns inside model settings."""
    settings = model.get("settings")
    wandb = settings.get("wandb") if isinstance(settings, dict) else None
    if isinstance(wandb, dict):
        wandb.pop("api_key", None)
    return model


CLIENT = FinetuningClient  # the client of a run's head start (pipelines/headstart.py)
