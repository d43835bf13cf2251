-- cohere's events as status_intervals (sql/01_status_intervals.sql) reads them: one row per event with the model,
-- who entered it, its short status, when, and the order within one timestamp (lifecycle rank, then the status as
-- sent). not a view: its ctes are placed at the top of that view's query.
status_events as (
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
        user_id as entered_by,
        status,
        created_at,
        api_status as first_tie,
        api_status as second_tie,
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
)
