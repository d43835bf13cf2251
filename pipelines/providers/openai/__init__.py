"""OpenAI's fine-tuning jobs API (``/v1/fine_tuning/jobs``): jobs, their events, checkpoints and metrics. A service
that serves the same API (Nebius, a proxy) is this provider with another ``OPENAI_BASE_URL``."""

from pipelines.providers import Provider

PROVIDER = Provider(
    name="openai",
    title="OpenAI",
    dataset="openai_finetuning",
    item="job",
    items_table="jobs",
    events_table="job_events",
    metrics_table="training_metrics",
    id_column="job_id",
    key_variables=("OPENAI_API_KEY",),
    base_url_variable="OPENAI_BASE_URL",
    default_base_url="https://api.openai.com/v1",
)
