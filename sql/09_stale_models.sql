-- models still queued, training or deploying after more than 48 hours
with lifecycles as (
    select
        finetuned_model_id,
        current_status,
        current_since,
        -- subtracted as utc wall times: duckdb subtracts zoned timestamps in the session time zone
        epoch((current_timestamp at time zone 'UTC') - (current_since at time zone 'UTC')) as stuck_seconds
    from model_lifecycle
    where current_status in ('QUEUED', 'FINETUNING', 'DEPLOYING_API')
)

select
    finetuned_model_id,
    current_status,
    current_since,
    stuck_seconds
from lifecycles
where stuck_seconds > 48 * 60 * 60
