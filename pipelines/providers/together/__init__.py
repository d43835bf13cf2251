"""Together AI's fine-tuning jobs API (``/v1/fine-tunes``): jobs, their typed event log and training metrics."""

from pipelines.providers import Provider

PROVIDER = Provider(
    name="together",
    title="Together AI",
    dataset="together_finetuning",
    item="job",
    items_table="jobs",
    events_table="job_events",
    metrics_table="training_metrics",
    id_column="job_id",
    key_variables=("TOGETHER_API_KEY",),
    base_url_variable="TOGETHER_BASE_URL",
    default_base_url="https://api.together.ai",
    strip_suffix="/v1",
)
