-- models still queued, training or deploying after more than 48 hours
with lifecycles as (
    select
        finetuned_model_id,
        current_status,
        current_since,
        epoch(current_timestamp - current_since) as stuck_seconds
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
