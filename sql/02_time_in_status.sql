-- one row per model and status: how often and how long the model has been in it
with intervals as (
    select
        finetuned_model_id,
        status,
        is_open,
        duration_seconds
    from status_intervals
)

select
    finetuned_model_id,
    status,
    count(*) as visits,
    sum(duration_seconds) as total_seconds,
    coalesce(sum(case when not is_open then duration_seconds end), 0) as closed_seconds,
    bool_or(is_open) as currently_in
from intervals
group by finetuned_model_id, status
