-- together's job events as status_intervals (sql/01_status_intervals.sql) reads them: only the types that begin a
-- status (pipelines/providers/together/lifecycle.py), each with the status it begins, the event type that entered it
-- and the order within one timestamp (the sdk's status order, then type, then message). events without a time are
-- stored but left out. not a view: its ctes are placed at the top of that view's query.
mapped_events as (
    select
        job_id,
        type,
        message,
        created_at,
        {{ status_of_type }} as status
    from job_events
    where created_at is not null
),

ranked_events as (
    select
        job_id,
        lower(type) as entered_by,
        status,
        created_at,
        type as first_tie,
        message as second_tie,
        {{ status_rank }} as lifecycle_rank
    from mapped_events
    where status is not null
)
