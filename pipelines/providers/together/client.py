"""Together AI's fine-tuning jobs API: the job list, a job, its events and its training metrics.

The API documents no paging: each endpoint answers with everything it has. A server that pages anyway is followed
through every marker known (see :func:`pipelines.http.next_page`), so a job's events and metrics are read whole.
Secrets a server might echo back (a W&B key, a Hugging Face token) are removed from every job before anything else
sees it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pipelines.headstart import read_each, whole
from pipelines.http import ApiClient, checked_id

JOBS_PATH = "/v1/fine-tunes"
# request-only secrets of the API (3.x: wandb_key; 1.x: wandb_api_key; hf_api_token), and any other api key
SECRET_FIELDS = frozenset({"wandb_key", "wandb_api_key", "hf_api_token", "hf_token", "api_key"})


class TogetherClient(ApiClient):
    """GETs Together's fine-tuning endpoints. Use ``async with``; one instance per event loop."""

    key_hint = "TOGETHER_API_KEY"

    async def list_jobs(self) -> list[dict[str, Any]]:
        """Every fine-tuning job, as listed (without events), secrets removed."""
        listed = await self.every_page(JOBS_PATH, {}, "data", "the job list", null_is_empty=True)
        return [checked_id(scrub(job), "the job list", "job") for job in listed]

    async def head_start(self, first_load: bool, metrics: bool) -> None:
        """The job list; on a first load, every job's events: what the source reads first (see source.what_to_read;
        whether a job has metrics to read is decided from its events)."""

        async def read(job: dict[str, Any]) -> None:
            await self.events(job["id"])

        await read_each(whole(self.list_jobs()), read, self.settings.concurrency if first_load else 0)

    async def get_job(self, job_id: str) -> dict[str, Any]:
        """One job, secrets removed; NotFoundError on 404."""
        where = f"job {job_id}"
        return checked_id(scrub(await self.get_json(f"{JOBS_PATH}/{quote(job_id, safe='')}", {}, where)), where, "job")

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        """Every event of a job, in the order served (oldest first, as the API documents)."""
        where = f"events of job {job_id}"
        return await self.every_page(f"{JOBS_PATH}/{quote(job_id, safe='')}/events", {}, "data", where, True)

    async def metrics(self, job_id: str, step_from: int | None = None) -> list[dict[str, Any]]:
        """A job's training metric rows, from ``step_from`` (inclusive) on; the API's null is no rows."""
        where = f"training metrics of job {job_id}"
        params = {} if step_from is None else {"global_step_from": step_from}
        return await self.every_page(f"{JOBS_PATH}/{quote(job_id, safe='')}/metrics", params, "metrics", where, True)


def scrub(value: Any) -> Any:
    """``value`` with every secret field removed, at any depth."""
    if isinstance(value, dict):
        for name in SECRET_FIELDS & value.keys():
            del value[name]
        for item in value.values():
            scrub(item)
    elif isinstance(value, list):
        for item in value:
            scrub(item)
    return value


CLIENT = TogetherClient  # the client of a run's head start (pipelines/headstart.py)
