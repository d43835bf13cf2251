"""OpenAI's fine-tuning job lifecycle: its statuses, and how a job's status history is rebuilt without a status log.

The API keeps no typed status log: a job has a current ``status``, a ``created_at`` and a ``finished_at``, and its
events are English messages. ``sql/openai/status_events.sql`` rebuilds the history from four kinds of points, each
named in ``status_intervals.entered_by``:

- ``created_at``: the job begins ``validating_files`` when it is created (inferred: the API's first status);
- ``event``: a message that begins a status, by the prefixes of :data:`STATUS_OF_MESSAGE` (the wording is
  inferred from client output unless marked observed in ../shared/openai-finetuning-api.md);
- ``finished_at``: a job in a terminal status entered it at ``finished_at`` (documented);
- ``observed``: the status a run saw in the job list, at the time of that run (``status_observations``), where the
  events show no later stage: an upper bound on when the status began, never a guess.

A last point, ``listed``, makes every job end in the status the job list gives now.
"""

from __future__ import annotations

from collections.abc import Mapping

# message prefix (lower-case) -> the status it begins; "observed" marks wording seen in the API's own examples
STATUS_OF_MESSAGE = {
    "created fine-tuning job": "validating_files",
    "created fine-tune": "validating_files",
    "validating training file": "validating_files",
    "files validated, moving job to queued state": "queued",
    "fine-tuning job started": "running",
    "fine tuning job started": "running",
    "fine-tuning job resumed": "running",
    "fine-tuning job paused": "paused",
    "fine tuning job successfully completed": "succeeded",  # observed [spec]
    "the job has successfully completed": "succeeded",
    "fine-tuning job successfully completed": "succeeded",
    "the job failed": "failed",
    "fine-tuning job failed": "failed",
    "fine-tuning job cancelled": "cancelled",
    "fine-tuning job canceled": "cancelled",
    "the job was cancelled": "cancelled",
}
# The SDK's status Literal in its lifecycle order, then `paused` (in the API's own pause example): the order of
# statuses that begin at one instant, and the lanes of charts.
STATUS_ORDER = ["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"]
# How far along a status is: an observation is left out where the events already show a later stage.
STAGE = {"validating_files": 0, "queued": 1, "running": 2, "paused": 2, "succeeded": 3, "failed": 3, "cancelled": 3}
TERMINAL = ("succeeded", "failed", "cancelled")
NO_STATUS = "unknown"
UNDER_WAY = ("validating_files", "queued", "running")  # a paused job waits for its owner: not stale
HAS_CHECKPOINTS = frozenset({"running", "paused", *TERMINAL})  # a job may have checkpoints once it has trained
SUCCEEDED = "succeeded"
OUTCOMES = {"succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled"}
KNOWN_STATUSES = frozenset(STATUS_ORDER)
KNOWN_EVENT_TYPES = frozenset({"message", "metrics"})


def sql_message_case(column: str) -> str:
    """A SQL ``case`` giving the status a message begins, matched lower-cased by its start (NULL for any other)."""
    whens = "\n".join(
        f"    when lower({column}) like '{prefix}%' then '{status}'" for prefix, status in STATUS_OF_MESSAGE.items()
    )
    return f"case\n{whens}\nend"


def sql_case(mapping: Mapping[str, object], column: str, default: object = "null") -> str:
    """A SQL ``case`` over ``column`` giving each key's value (``default`` for any other)."""
    whens = "\n".join(f"    when '{key}' then {value}" for key, value in mapping.items())
    return f"case {column}\n{whens}\n    else {default}\nend"


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
    "status_of_message": sql_message_case("message"),
    "status_rank": sql_case({status: rank for rank, status in enumerate(STATUS_ORDER)}, "status", len(STATUS_ORDER)),
    "stage_of_status": sql_case(STAGE, "status"),
    "terminal": ", ".join(f"'{status}'" for status in TERMINAL),
}
VIEW_NAMES = {"stale": "stale_jobs"}  # shared templates whose view has another name here
NAME_COLUMN = "suffix"  # the lifecycle view's column that names a job for people (its user_provided_suffix)

# The report's training section: medians over jobs of each job's last train and validation loss (finite values
# only), and the jobs whose loss went NaN or infinite.
TRAINING_QUERIES = {
    "by_base_model": """
        with finals as (
            select
                job_id,
                max(case when metric = 'train_loss' then last_value end) as final_train_loss,
                max(case when metric = 'full_valid_loss' then last_value end) as final_full_valid_loss,
                bool_or(metric like '%loss%' and not isfinite(last_value)) as diverged
            from {schema}.training_summary
            group by job_id
        )
        select
            coalesce(lifecycle.base_model, 'unknown') as base_model,
            count(*) as jobs,
            median(final_train_loss) filter (where isfinite(final_train_loss)) as median_final_train_loss,
            median(final_full_valid_loss) filter (where isfinite(final_full_valid_loss))
                as median_final_full_valid_loss,
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
    "validating_files": "#bbbbbb", "queued": "#9ecae1", "running": "#3182bd", "paused": "#fdae6b",
    "succeeded": "#31a354", "failed": "#de2d26", "cancelled": "#636363",
}  # fmt: skip
DONE_STATUS = "succeeded"
TIME_TO_DONE = "time_to_succeed_seconds"  # job_lifecycle: created -> first succeeded
STEP_TIMINGS = ("validation_seconds", "queue_seconds", "training_seconds", "time_to_succeed_seconds")
BASE_LABEL = "coalesce(base_model, 'unknown')"
FINAL_METRICS = ("train_loss", "full_valid_loss")
TIMING_LABELS = {  # job_lifecycle's step timings, as the HTML report names them
    "validation_seconds": "file validation (validating_files → queued)",
    "queue_seconds": "queue (queued → running)",
    "training_seconds": "training (running → finished)",
    "time_to_succeed_seconds": "created → succeeded",
}
