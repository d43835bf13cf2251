-- one row per model: where it is now, when it first reached each step, how its first attempt ended
with models as (
    select
        id as finetuned_model_id,
        name,
        settings__base_model__base_type as base_type,
        settings__base_model__name as base_model_name,
        created_at
    from finetuned_models
),

intervals as (
    select
        finetuned_model_id,
        interval_seq,
        status,
        entered_at,
        is_open
    from status_intervals
),

model_ids as (
    select finetuned_model_id from models
    union
    select finetuned_model_id from intervals
),

milestones as (
    select
        finetuned_model_id,
        min(entered_at) as first_event_at,
        min(case when status = 'QUEUED' then entered_at end) as first_queued_at,
        min(case when status = 'FINETUNING' then entered_at end) as first_finetuning_at,
        min(case when status = 'DEPLOYING_API' then entered_at end) as first_deploying_at,
        min(case when status = 'READY' then entered_at end) as first_ready_at,
        min(case when status = 'FAILED' then entered_at end) as first_failed_at,
        min(case when status = 'DELETED' then entered_at end) as first_deleted_at,
        min(case when status in ('READY', 'FAILED', 'DELETED') then interval_seq end) as first_end_seq,
        min(case when status = 'READY' then interval_seq end) as first_ready_seq,
        max(case when status = 'READY' then interval_seq end) as last_ready_seq,
        min(case when status = 'FAILED' then interval_seq end) as first_failed_seq,
        min(case when status = 'DELETED' then interval_seq end) as first_deleted_seq
    from intervals
    group by finetuned_model_id
),

step_timings as (
    -- exact elapsed seconds from utc epoch microseconds, whatever the session time zone
    select
        finetuned_model_id,
        (epoch_us(first_finetuning_at) - epoch_us(first_queued_at)) / 1000000 as queue_seconds,
        (epoch_us(first_deploying_at) - epoch_us(first_finetuning_at)) / 1000000 as training_seconds,
        (epoch_us(first_ready_at) - epoch_us(first_deploying_at)) / 1000000 as deploy_seconds,
        (epoch_us(first_ready_at) - epoch_us(first_event_at)) / 1000000 as time_to_ready_seconds
    from milestones
),

current_intervals as (
    select
        finetuned_model_id,
        status as current_status,
        entered_at as current_since
    from intervals
    where is_open
),

outcomes as (
    select
        finetuned_model_id,
        -- the first end reached (least() of the three would be null on bigquery and snowflake if one is missing)
        case first_end_seq
            when first_ready_seq then 'ready'
            when first_failed_seq then 'failed'
            when first_deleted_seq then 'cancelled'
        end as first_outcome,
        first_failed_seq is not null as ever_failed,
        coalesce(last_ready_seq > first_failed_seq, false) as recovered
    from milestones
)

select
    model_ids.finetuned_model_id,
    models.name,
    models.base_type,
    models.base_model_name,
    coalesce(milestones.first_event_at, models.created_at) as first_seen_at,
    current_intervals.current_status,
    current_intervals.current_since,
    milestones.first_queued_at,
    milestones.first_finetuning_at,
    milestones.first_deploying_at,
    milestones.first_ready_at,
    milestones.first_failed_at,
    milestones.first_deleted_at,
    coalesce(outcomes.first_outcome, 'in_flight') as first_outcome,
    coalesce(outcomes.ever_failed, false) as ever_failed,
    coalesce(outcomes.recovered, false) as recovered,
    step_timings.queue_seconds,
    step_timings.training_seconds,
    step_timings.deploy_seconds,
    step_timings.time_to_ready_seconds
from model_ids
left join models on model_ids.finetuned_model_id = models.finetuned_model_id
left join milestones on model_ids.finetuned_model_id = milestones.finetuned_model_id
left join current_intervals on model_ids.finetuned_model_id = current_intervals.finetuned_model_id
left join outcomes on model_ids.finetuned_model_id = outcomes.finetuned_model_id
left join step_timings on model_ids.finetuned_model_id = step_timings.finetuned_model_id
