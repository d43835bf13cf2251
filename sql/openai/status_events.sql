-- openai's status history, as status_intervals (sql/01_status_intervals.sql) reads it. the api keeps no status log,
-- so a job's history is built from points of four kinds, named in entered_by (see
-- pipelines/providers/openai/lifecycle.py): 'created_at' (validating_files begins when the job is created),
-- 'event' (a message that begins a status), 'finished_at' (a terminal status begins then) and 'observed' (the
-- status a run saw in the job list, at that run's time, unless the points before it already show a later stage).
-- a last point, 'listed', is the job's current status at its latest point, so that every job ends in the status
-- the job list gives. within one second the order is created_at, then the api's order of events (seq), then
-- finished_at, observed and listed. not a view: its ctes are placed at the top of that view's query.
listed_jobs as (
    select
        id as job_id,
        created_at,
        finished_at,
        lower(status) as status
    from jobs
),

message_events as (
    select
        job_id,
        created_at,
        seq,
        {{ status_of_message }} as status
    from job_events
    where created_at is not null
),

inferred_points as (
    select
        job_id,
        'created_at' as entered_by,
        'validating_files' as status,
        created_at,
        -1 as point_order
    from listed_jobs
    where created_at is not null
    union all
    select
        job_id,
        'event' as entered_by,
        status,
        created_at,
        seq as point_order
    from message_events
    where status is not null
    union all
    select
        job_id,
        'finished_at' as entered_by,
        status,
        finished_at as created_at,
        1000000000000000 as point_order
    from listed_jobs
    where finished_at is not null and status in ({{ terminal }})
),

staged_points as (
    select
        job_id,
        entered_by,
        status,
        created_at,
        point_order,
        {{ stage_of_status }} as stage
    from inferred_points
),

observations as (
    select
        job_id,
        observed_at,
        lower(status) as status
    from status_observations
),

staged_observations as (
    select
        job_id,
        observed_at,
        status,
        {{ stage_of_status }} as stage
    from observations
),

observation_stages as (
    select
        staged_observations.job_id,
        staged_observations.observed_at,
        staged_observations.status,
        staged_observations.stage,
        max(staged_points.stage) as reached_stage
    from staged_observations
    left join staged_points
        on
            staged_observations.job_id = staged_points.job_id
            and staged_points.created_at <= staged_observations.observed_at
    group by
        staged_observations.job_id,
        staged_observations.observed_at,
        staged_observations.status,
        staged_observations.stage
),

known_points as (
    select
        job_id,
        entered_by,
        status,
        created_at,
        point_order
    from staged_points
    union all
    select
        job_id,
        'observed' as entered_by,
        status,
        observed_at as created_at,
        2000000000000000 as point_order
    from observation_stages
    where stage is null or reached_stage is null or stage >= reached_stage
),

latest_points as (
    select
        job_id,
        max(created_at) as latest_at
    from known_points
    group by job_id
),

ranked_events as (
    select
        job_id,
        entered_by,
        status,
        created_at,
        status as first_tie,
        entered_by as second_tie,
        point_order as lifecycle_rank
    from known_points
    union all
    select
        listed_jobs.job_id,
        'listed' as entered_by,
        listed_jobs.status,
        coalesce(latest_points.latest_at, listed_jobs.created_at) as created_at,
        listed_jobs.status as first_tie,
        'listed' as second_tie,
        3000000000000000 as lifecycle_rank
    from listed_jobs
    left join latest_points on listed_jobs.job_id = latest_points.job_id
    where listed_jobs.status <> '' and coalesce(latest_points.latest_at, listed_jobs.created_at) is not null
)
