-- one row per status: how long closed intervals of it lasted (open intervals are only counted)
with intervals as (
    select
        finetuned_model_id,
        status,
        is_open,
        case when not is_open then duration_seconds end as closed_seconds
    from status_intervals
)

select
    status,
    count(closed_seconds) as closed_intervals,
    count(*) filter (where is_open) as open_intervals,
    count(distinct finetuned_model_id) as models,
    avg(closed_seconds) as avg_seconds,
    quantile_cont(closed_seconds, 0.5) as p50_seconds,
    quantile_cont(closed_seconds, 0.9) as p90_seconds,
    max(closed_seconds) as max_seconds
from intervals
group by status
