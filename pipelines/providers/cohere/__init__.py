"""Cohere's fine-tuning API (retired by Cohere on 2025-09-15; still served by some deployments)."""

from pipelines.providers import Provider

PROVIDER = Provider(
    name="cohere",
    title="Cohere",
    dataset="cohere_finetuning",
    item="model",
    items_table="finetuned_models",
    events_table="events",
    metrics_table="training_step_metrics",
    id_column="finetuned_model_id",
    key_variables=("CO_API_KEY", "COHERE_API_KEY"),
    base_url_variable="CO_API_URL",
    default_base_url="https://api.cohere.com",
)
