"""Together AI's job lifecycle: which event type begins which job status, their order, phases and outcomes.

No event carries a status; ../shared/together-finetuning-api.md gives the mapping, with its evidence. Types are
matched lower-cased (2023's API sent ``JOB_PENDING``, and ``COMPRESSING_MODEL`` for model_compressing). Every other
type begins no status: downloads, checkpoints, epochs, warnings and unknown types.
"""

from __future__ import annotations

# event type -> the job status it begins ("inferred": no source says so; see the notes for the evidence)
STATUS_OF_TYPE = {
    "job_pending": "pending",
    "job_start": "running",  # inferred: "Job started at", then downloads and training
    "training_start": "running",  # inferred
    "model_compressing": "compressing",
    "compressing_model": "compressing",  # 2023's name of model_compressing
    "model_compression_complete": "uploading",  # inferred: compression runs inside the upload
    "model_uploading": "uploading",
    "cancel_requested": "cancel_requested",
    "job_stopped": "cancelled",  # inferred: the only stop type
    "job_error": "error",
    "job_user_error": "user_error",
    "job_complete": "completed",
    "job_restarted": "queued",  # inferred: a restarted job waits for hardware; job_start follows
}
# the SDK's enum order: the order of statuses that begin at one timestamp
STATUS_ORDER = [
    "pending",
    "queued",
    "running",
    "compressing",
    "uploading",
    "cancel_requested",
    "cancelled",
    "error",
    "user_error",
    "completed",
]
TERMINAL = ("completed", "error", "user_error", "cancelled")
NO_STATUS = "unknown"  # a listed job with no mapped event yet has no current status: this word stands for it
UNDER_WAY = ("pending", "queued", "running", "compressing", "uploading", "cancel_requested")
QUEUE_STATUS, TRAINING_STATUS = "pending", "running"
SUCCEEDED = "succeeded"
OUTCOMES = {"completed": "succeeded", "error": "failed", "user_error": "failed", "cancelled": "cancelled"}
# Every event type the SDK (3.1.1) names, the lib enum's four more, and 2023's spelling: others are warned of once.
KNOWN_TYPES = frozenset(
    {
        *STATUS_OF_TYPE,
        "model_downloading",
        "model_download_complete",
        "training_data_downloading",
        "training_data_download_complete",
        "validation_data_downloading",
        "validation_data_download_complete",
        "wandb_init",
        "checkpoint_save",
        "billing_limit",
        "epoch_complete",
        "training_complete",
        "model_upload_complete",
        "refund",
        "warning",
        "early_stopped",
        "tokenized_dataset_upload_complete",
        "eval_complete",
        "model_uploading_to_hf",
        "model_upload_to_hf_complete",
    }
)
KNOWN_STATUSES = frozenset(STATUS_ORDER)
RESTART_TYPE = "job_restarted"
# An error and a restart of one instant are one thing: the node failed and the job was requeued. The error begins no
# status then (sql/together/status_events.sql), so the job reads as restarted, not failed.
ABSORBED_BY_RESTART = "job_error"
# What the job list may say while the events end in another status: pending -> queued has no event.
LISTED_AS_MAPPED = {"queued": "pending"}


def last_mapped_status(events: list[tuple[int, str, str]]) -> str | None:
    """The status a job's events end in, as status_intervals orders them: (time µs, type, message) of each timed
    event; ties within one instant by status rank, then type, then message. None when no event begins a status."""
    restarts = {moment for moment, kind, _ in events if kind.lower() == RESTART_TYPE}
    ranked = []
    for moment, kind, message in events:
        status = STATUS_OF_TYPE.get(kind.lower())
        if status is None or (kind.lower() == ABSORBED_BY_RESTART and moment in restarts):
            continue
        rank = STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER)
        ranked.append((moment, rank, kind, message or "", status))
    return max(ranked)[4] if ranked else None


def agrees(listed: str, mapped: str | None) -> bool:
    """Whether a job's listed status is what its events end in (a status the lifecycle does not know agrees)."""
    listed = listed.lower()
    if listed not in KNOWN_STATUSES:
        return True
    if mapped is None:
        return listed in ("pending", "queued")
    return LISTED_AS_MAPPED.get(listed, listed) == LISTED_AS_MAPPED.get(mapped, mapped)


def sql_case(mapping: dict[str, str], column: str) -> str:
    """A SQL ``case`` over ``column`` giving each key's value (NULL for any other)."""
    whens = "\n".join(f"    when '{key}' then '{value}'" for key, value in mapping.items())
    return f"case {column}\n{whens}\nend"


def sql_rank(column: str) -> str:
    """A SQL ``case`` giving each status its place in STATUS_ORDER (unknown last)."""
    whens = "\n".join(f"    when '{status}' then {rank}" for rank, status in enumerate(STATUS_ORDER))
    return f"case {column}\n{whens}\n    else {len(STATUS_ORDER)}\nend"


# The words sql/*.sql templates are rendered with for this provider (see pipelines/views.py).
VIEW_WORDS = {
    "item": "job",
    "items": "jobs",
    "id": "job_id",
    "succeeded": SUCCEEDED,
    "lifecycle": "job_lifecycle",
    "base_model": "base_model",
    "base_model_key": "base_model",
    "under_way": ", ".join(f"'{status}'" for status in UNDER_WAY),
    "metrics_table": "training_metrics",
    "step": "step",
    "step_at": "logged_at",
    "status_of_type": sql_case(STATUS_OF_TYPE, "lower(type)"),
    "status_rank": sql_rank("status"),
}
VIEW_NAMES = {"stale": "stale_jobs"}  # shared templates whose view has another name here
NAME_COLUMN = "model_output_name"  # the lifecycle view's column that names a job for people

# The report's training section: medians over jobs of each job's last train and eval loss (finite values only), and
# the jobs whose loss went NaN or infinite.
TRAINING_QUERIES = {
    "by_base_model": """
        with finals as (
            select
                job_id,
                max(case when metric = 'train/loss' then last_value end) as final_train_loss,
                max(case when metric = 'eval/loss' then last_value end) as final_eval_loss,
                max(last_step_number) as last_step,
                bool_or(metric like '%loss%' and not isfinite(last_value)) as diverged
            from {schema}.training_summary
            group by job_id
        )
        select
            coalesce(lifecycle.base_model, 'unknown') as base_model,
            count(*) as jobs,
            median(final_train_loss) filter (where isfinite(final_train_loss)) as median_final_train_loss,
            median(final_eval_loss) filter (where isfinite(final_eval_loss)) as median_final_eval_loss,
            count(*) filter (where diverged) as diverged
        from finals
        left join {schema}.job_lifecycle as lifecycle using (job_id)
        group by all
        order by base_model
    """,
    "diverged": """
        select summary.job_id, lifecycle.base_model, summary.metric, summary.last_step_number as last_step,
            summary.last_value, lifecycle.first_outcome as outcome
        from {schema}.training_summary as summary
        left join {schema}.job_lifecycle as lifecycle using (job_id)
        where summary.metric like '%loss%' and not isfinite(summary.last_value)
        order by summary.last_step_at desc, summary.job_id, summary.metric
    """,
}
TRAINING_TITLES = {
    "by_base_model": "Training: final losses by base model (median over jobs)",
    "diverged": "Diverged trainings (a loss ended NaN or infinite)",
}
# The text report leaves these out first, right to left, when a table is too wide for the terminal.
TRAINING_OPTIONAL = {"diverged": {"base_model", "last_step"}}

# For the notebooks: colours per status, the status that means done, and what to compare at the end of training.
STATUS_COLORS = {
    "pending": "#bbbbbb", "queued": "#9ecae1", "running": "#3182bd", "compressing": "#fdae6b",
    "uploading": "#fd8d3c", "cancel_requested": "#969696", "cancelled": "#636363", "error": "#de2d26",
    "user_error": "#fb6a4a", "completed": "#31a354",
}  # fmt: skip
DONE_STATUS = "completed"
TIME_TO_DONE = "time_to_complete_seconds"  # job_lifecycle: first event -> first completed
STEP_TIMINGS = ("queue_seconds", "setup_seconds", "training_seconds", "upload_seconds", "time_to_complete_seconds")
BASE_LABEL = "coalesce(base_model, 'unknown')"
FINAL_METRICS = ("train/loss", "eval/loss")
TIMING_LABELS = {  # job_lifecycle's step timings, as the HTML report names them
    "queue_seconds": "queue (pending → running)",
    "setup_seconds": "set-up: downloads (running → training_start)",
    "training_seconds": "training (every training spell; a restart's requeue and set-up apart)",
    "upload_seconds": "upload (compressing or uploading → completed)",
    "time_to_complete_seconds": "first event → completed",
}
