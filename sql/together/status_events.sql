-- together's job events as status_intervals (sql/01_status_intervals.sql) reads them: only the types that begin a
-- status (pipelines/providers/together/lifecycle.py), each with the status it begins, the event type that entered it
-- and the order within one timestamp (the sdk's status order, then type, then message). events without a time are
-- stored but left out, and so is a job_error of the same instant as a job_restarted: the failure that the restart
-- answered, not the job's outcome. not a view: its ctes are placed at the top of that view's query.
restart_events as (
    select distinct
        job_id,
        created_at
    from job_events
    where lower(type) = 'job_restarted' and created_at is not null
),

mapped_events as (
    select
        job_events.job_id,
        job_events.type,
        job_events.message,
        job_events.created_at,
        {{ status_of_type }} as status
    from job_events
    left join restart_events
        on job_events.job_id = restart_events.job_id and job_events.created_at = restart_events.created_at
    where
        job_events.created_at is not null
        and not (lower(job_events.type) = 'job_error' and restart_events.job_id is not null)
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
