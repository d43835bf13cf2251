-- models still queued, training or deploying after more than 48 hours
with lifecycles as (
    select
        finetuned_model_id,
        current_status,
        current_since,
        -- exact elapsed seconds from utc epoch microseconds, whatever the session time zone
        (epoch_us(current_timestamp) - epoch_us(current_since)) / 1000000 as stuck_seconds
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
