"""Azure OpenAI's fine-tuning jobs (``https://RESOURCE.openai.azure.com/openai/v1/fine_tuning/jobs``): OpenAI's API,
objects and lifecycle, read with Azure's ``api-key`` header into a dataset of its own. Only the client (its auth),
the source (its name) and the simulator (its paths and auth) are Azure's; the rest is the ``openai`` provider's."""

from pipelines.providers import Provider

PROVIDER = Provider(
    name="azure",
    title="Azure OpenAI",
    dataset="azure_openai_finetuning",
    item="job",
    items_table="jobs",
    events_table="job_events",
    metrics_table="training_metrics",
    id_column="job_id",
    key_variables=("AZURE_OPENAI_API_KEY",),
    base_url_variable="AZURE_OPENAI_ENDPOINT",
    default_base_url="",  # each resource has its own endpoint: AZURE_OPENAI_ENDPOINT is required
    add_suffix="/openai/v1",
    implementation="openai",
)
