"""OpenAI's fine-tuning jobs API (and Azure OpenAI's v1 API, and compatible services): jobs, events, checkpoints.

Every list pages by cursor: ``limit``, and ``after`` = the id of the last item of a page, while ``has_more``
(:func:`pipelines.http.next_page`). Lists are newest first, so a job's new events are the ones served before the
newest event already stored: :meth:`OpenAiClient.events_since` stops there. Secrets a server might echo (a W&B key
in ``integrations``, any ``api_key``-like field) are removed from every job before anything else sees it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pipelines.headstart import read_each, whole
from pipelines.http import ApiClient, checked_id

JOBS_PATH = "/fine_tuning/jobs"
MAX_LIMIT = 100  # the most a list answers at once (OpenAI's usual list maximum; the spec gives none)
SECRET_NAMES = frozenset({"api_key", "apikey", "key", "token", "access_token", "secret", "password"})
SECRET_ENDINGS = ("_api_key", "_key", "_token", "_secret", "_password")


class OpenAiClient(ApiClient):
    """GETs OpenAI's fine-tuning endpoints with a bearer key. Use ``async with``; one instance per event loop."""

    key_hint = "OPENAI_API_KEY"

    @property
    def limit(self) -> int:
        return max(1, min(MAX_LIMIT, self.settings.page_size))

    async def list_jobs(self) -> list[dict[str, Any]]:
        """Every fine-tuning job, newest first, secrets removed."""
        listed = await self.every_page(JOBS_PATH, {"limit": self.limit}, "data", "the job list", null_is_empty=True)
        return [checked_id(scrub(job), "the job list", "job") for job in listed]

    async def head_start(self, first_load: bool, metrics: bool) -> None:
        """The job list; on a first load, every job's events: what the source reads first (see source.what_to_read;
        checkpoints are read once a job may have trained)."""

        async def read(job: dict[str, Any]) -> None:
            await self.events_since(job["id"], None)

        await read_each(whole(self.list_jobs()), read, self.settings.concurrency if first_load else 0)

    async def get_job(self, job_id: str) -> dict[str, Any]:
        """One job, secrets removed; NotFoundError on 404."""
        where = f"job {job_id}"
        return checked_id(scrub(await self.get_json(f"{JOBS_PATH}/{quote(job_id, safe='')}", {}, where)), where, "job")

    async def events_since(self, job_id: str, known: str | None) -> tuple[list[dict[str, Any]], bool]:
        """A job's events newer than the event ``known`` (every event when None), newest first, and whether
        ``known`` was met: when it was not, the list no longer holds it and these are the job's whole history."""
        where = f"events of job {job_id}"
        path = f"{JOBS_PATH}/{quote(job_id, safe='')}/events"
        events: list[dict[str, Any]] = []
        async for page in self.each_page(path, {"limit": self.limit}, "data", where, null_is_empty=True):
            for event in page:
                if known is not None and event.get("id") == known:
                    return events, True
                events.append(checked_id(event, where, "event"))
        return events, known is None

    async def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        """Every checkpoint of a job, newest first."""
        where = f"checkpoints of job {job_id}"
        path = f"{JOBS_PATH}/{quote(job_id, safe='')}/checkpoints"
        listed = await self.every_page(path, {"limit": self.limit}, "data", where, null_is_empty=True)
        return [checked_id(checkpoint, where, "checkpoint") for checkpoint in listed]


def is_secret(name: str) -> bool:
    """Whether a field's name says it holds a secret (``api_key``, ``wandb_key``, ``hf_token`` ...)."""
    lowered = name.lower()
    return lowered in SECRET_NAMES or lowered.endswith(SECRET_ENDINGS)


def scrub(value: Any) -> Any:
    """``value`` with every secret-named field removed, at any depth."""
    if isinstance(value, dict):
        for name in [name for name in value if isinstance(name, str) and is_secret(name)]:
            del value[name]
        for item in value.values():
            scrub(item)
    elif isinstance(value, list):
        for item in value:
            scrub(item)
    return value


CLIENT = OpenAiClient  # the client of a run's head start (pipelines/headstart.py)
