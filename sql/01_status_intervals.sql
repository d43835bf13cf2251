-- one row per maximal run of one status of one model, in event order;
-- the last interval of a model is open and its duration runs to the time of the query.
-- every window orders by columns that are never null, written `nulls first`: that is bigquery's default, which
-- cannot state another null order in a window, so each dialect is given the same order.
with status_events as (
    select
        finetuned_model_id,
        user_id,
        status as api_status,
        regexp_replace(upper(status), '^STATUS_', '') as status,
        created_at
    from events
),

ranked_events as (
    select
        finetuned_model_id,
        user_id,
        api_status,
        status,
        created_at,
        case status
            when 'UNSPECIFIED' then 0
            when 'QUEUED' then 1
            when 'FINETUNING' then 2
            when 'DEPLOYING_API' then 3
            when 'READY' then 4
            when 'TEMPORARILY_OFFLINE' then 5
            when 'PAUSED' then 6
            when 'FAILED' then 7
            when 'DELETED' then 8
            else 9
        end as lifecycle_rank
    from status_events
),

ordered_events as (
    select
        finetuned_model_id,
        user_id,
        status,
        created_at,
        row_number() over (
            partition by finetuned_model_id
            order by created_at nulls first, lifecycle_rank nulls first, api_status nulls first
        ) as event_seq
    from ranked_events
),

status_changes as (
    select
        finetuned_model_id,
        user_id,
        status,
        created_at,
        event_seq,
        case
            when lag(status) over (partition by finetuned_model_id order by event_seq nulls first) = status then 0
            else 1
        end as starts_interval
    from ordered_events
),

numbered_events as (
    select
        finetuned_model_id,
        user_id,
        status,
        created_at,
        starts_interval,
        cast(sum(starts_interval) over (
            partition by finetuned_model_id
            order by event_seq nulls first
            rows between unbounded preceding and current row
        ) as bigint) as interval_seq
    from status_changes
),

intervals as (
    select
        finetuned_model_id,
        interval_seq,
        status,
        min(created_at) as entered_at,
        count(*) as n_events,
        max(case when starts_interval = 1 then user_id end) as entered_by
    from numbered_events
    group by finetuned_model_id, interval_seq, status
),

linked_intervals as (
    select
        finetuned_model_id,
        interval_seq,
        status,
        entered_at,
        lead(entered_at) over (partition by finetuned_model_id order by interval_seq nulls first) as exited_at,
        n_events,
        lag(status) over (partition by finetuned_model_id order by interval_seq nulls first) as prev_status,
        lead(status) over (partition by finetuned_model_id order by interval_seq nulls first) as next_status,
        entered_by
    from intervals
)

select
    finetuned_model_id,
    interval_seq,
    status,
    entered_at,
    exited_at,
    exited_at is null as is_open,
    -- exact elapsed seconds from utc epoch microseconds, whatever the session time zone
    (epoch_us(coalesce(exited_at, current_timestamp)) - epoch_us(entered_at)) / 1000000 as duration_seconds,
    n_events,
    prev_status,
    next_status,
    entered_by
from linked_intervals
