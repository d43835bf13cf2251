"""Cohere's model lifecycle as the views and reports see it: short statuses, their order, and outcomes.

A model's events carry its status (``STATUS_QUEUED`` ...); the views shorten it (``QUEUED``) and order events of one
timestamp by lifecycle rank (sql/cohere/status_events.sql). First outcome: READY -> ready, FAILED -> failed,
DELETED -> cancelled.
"""

STATUS_ORDER = [
    "UNSPECIFIED",
    "QUEUED",
    "FINETUNING",
    "DEPLOYING_API",
    "READY",
    "TEMPORARILY_OFFLINE",
    "PAUSED",
    "FAILED",
    "DELETED",
]
NO_STATUS = "UNSPECIFIED"  # a listed model with no event yet has no current status: this word stands for it
UNDER_WAY = ("QUEUED", "FINETUNING", "DEPLOYING_API")  # a model stuck in one of these for 48 hours is stale
QUEUE_STATUS, TRAINING_STATUS = "QUEUED", "FINETUNING"
SUCCEEDED = "ready"  # the first outcome's name for success, and its column in the failure_rates views

# The words sql/*.sql templates are rendered with for this provider (see pipelines/views.py).
VIEW_WORDS = {
    "item": "model",
    "items": "models",
    "id": "finetuned_model_id",
    "succeeded": SUCCEEDED,
    "lifecycle": "model_lifecycle",
    "base_model": "base_type,\n    base_model_name",
    "base_model_key": "base_type",
    "under_way": ", ".join(f"'{status}'" for status in UNDER_WAY),
    "metrics_table": "training_step_metrics",
    "step": "step_number",
    "step_at": "created_at",
}
VIEW_NAMES = {"stale": "stale_models"}  # shared templates whose view has another name here
NAME_COLUMN = "name"  # the lifecycle view's column that names a model for people

# The report's training section: medians over models of each model's value at its last step (finite values only),
# and the trainings whose loss went NaN or infinite.
TRAINING_QUERIES = {
    "by_base_model": """
        select
            coalesce(base_model_name, '(' || lower(replace(base_type, 'BASE_TYPE_', '')) || ')', 'unknown')
                as base_model,
            base_type,
            count(*) as models,
            median(final_accuracy) filter (where isfinite(final_accuracy)) as median_final_accuracy,
            median(final_cross_entropy) filter (where isfinite(final_cross_entropy)) as median_final_cross_entropy,
            count(*) filter (where diverged) as diverged
        from {schema}.training_outcomes
        group by all
        order by base_type, base_model
    """,
    "diverged": """
        select finetuned_model_id, name, base_model_name, first_non_finite_step, last_step_number,
            final_cross_entropy, first_outcome
        from {schema}.training_outcomes
        where diverged
        order by last_step_at desc, finetuned_model_id
    """,
}
TRAINING_TITLES = {
    "by_base_model": "Training: final metrics by base model (median over models)",
    "diverged": "Diverged trainings (loss went NaN or infinite)",
}
# The text report leaves these out first, right to left, when a table is too wide for the terminal.
TRAINING_OPTIONAL = {"by_base_model": {"base_type"}, "diverged": {"base_model_name", "last_step_number"}}

# For the notebooks: colours per status, the status that means done, and what to compare at the end of training.
STATUS_COLORS = {
    "UNSPECIFIED": "#bbbbbb", "QUEUED": "#9ecae1", "FINETUNING": "#3182bd", "DEPLOYING_API": "#fdae6b",
    "READY": "#31a354", "TEMPORARILY_OFFLINE": "#969696", "PAUSED": "#756bb1", "FAILED": "#de2d26",
    "DELETED": "#636363",
}  # fmt: skip
DONE_STATUS = "READY"
TIME_TO_DONE = "time_to_ready_seconds"  # model_lifecycle: first event -> first READY
STEP_TIMINGS = ("queue_seconds", "training_seconds", "deploy_seconds", "time_to_ready_seconds")
BASE_LABEL = "coalesce(base_model_name, '(' || lower(replace(base_type, 'BASE_TYPE_', '')) || ')', 'unknown')"
FINAL_METRICS = ("accuracy", "cross_entropy")
TIMING_LABELS = {  # model_lifecycle's step timings, as the HTML report names them
    "queue_seconds": "queue (QUEUED → FINETUNING)",
    "training_seconds": "training (FINETUNING → DEPLOYING_API)",
    "deploy_seconds": "deploy (DEPLOYING_API → READY)",
    "time_to_ready_seconds": "first event → READY",
}
