-- one row per job: where it is now, when it first reached each step, how its first attempt ended and how long the
-- queue, set-up (downloads), training and upload took. statuses come from status_intervals (mapped events);
-- training's start and end are event types of their own (training_start, training_complete). training_seconds is
-- the time spent training, as phase_intervals measures it: the sum of every training spell (training_start to the
-- first of training_complete, the next training_start, compression, upload, or the job's end or restart), so that a
-- restarted job's requeue and second set-up are not counted; null until the job's training has completed.
with jobs_listed as (
    select
        id as job_id,
        model_output_name,
        model as base_model,
        training_type__type as training_type,
        training_method__method as training_method,
        status as api_status,
        created_at
    from jobs
),

intervals as (
    select
        job_id,
        interval_seq,
        status,
        entered_at,
        is_open
    from status_intervals
),

training_events as (
    select
        job_id,
        min(case when lower(type) = 'training_start' then created_at end) as training_started_at,
        min(case when lower(type) = 'training_complete' then created_at end) as training_completed_at,
        count(case when lower(type) = 'job_restarted' then 1 end) as restarts
    from job_events
    where created_at is not null
    group by job_id
),

training_starts as (
    select distinct
        job_id,
        created_at as started_at
    from job_events
    where lower(type) = 'training_start' and created_at is not null
),

training_stops as (
    select
        job_id,
        created_at
    from job_events
    where
        created_at is not null
        and lower(type) in (
            'training_complete', 'training_start', 'model_compressing', 'compressing_model', 'model_uploading',
            'job_complete', 'job_error', 'job_user_error', 'job_stopped', 'job_restarted'
        )
),

training_spells as (
    select
        training_starts.job_id,
        training_starts.started_at,
        min(training_stops.created_at) as ended_at
    from training_starts
    left join training_stops
        on training_starts.job_id = training_stops.job_id and training_stops.created_at > training_starts.started_at
    group by training_starts.job_id, training_starts.started_at
),

training_time as (
    select
        job_id,
        count(*) as spells,
        count(ended_at) as closed_spells,
        sum(epoch_us(ended_at) - epoch_us(started_at)) as trained_us
    from training_spells
    group by job_id
),

job_ids as (
    select job_id from jobs_listed
    union
    select job_id from intervals
),

milestones as (
    select
        job_id,
        min(entered_at) as first_event_at,
        min(case when status = 'pending' then entered_at end) as first_pending_at,
        min(case when status = 'running' then entered_at end) as first_running_at,
        min(case when status in ('compressing', 'uploading') then entered_at end) as first_uploading_at,
        min(case when status = 'completed' then entered_at end) as first_completed_at,
        min(case when status in ('error', 'user_error') then entered_at end) as first_failed_at,
        min(case when status = 'cancelled' then entered_at end) as first_cancelled_at,
        min(case when status in ('completed', 'error', 'user_error', 'cancelled') then interval_seq end)
            as first_end_seq,
        min(case when status = 'completed' then interval_seq end) as first_completed_seq,
        min(case when status in ('error', 'user_error') then interval_seq end) as first_failed_seq,
        min(case when status = 'cancelled' then interval_seq end) as first_cancelled_seq
    from intervals
    group by job_id
),

step_times as (
    select
        milestones.job_id,
        milestones.first_event_at,
        milestones.first_pending_at,
        milestones.first_running_at,
        training_events.training_started_at,
        -- training ends with training_complete, else where compression or upload begins
        coalesce(training_events.training_completed_at, milestones.first_uploading_at) as training_ended_at,
        milestones.first_uploading_at,
        milestones.first_completed_at
    from milestones
    left join training_events on milestones.job_id = training_events.job_id
),

step_timings as (
    -- exact elapsed seconds from utc epoch microseconds, whatever the session time zone
    select
        step_times.job_id,
        (epoch_us(first_running_at) - epoch_us(first_pending_at)) / 1000000 as queue_seconds,
        (epoch_us(training_started_at) - epoch_us(first_running_at)) / 1000000 as setup_seconds,
        case
            when training_ended_at is not null and training_time.closed_spells = training_time.spells
                then training_time.trained_us / 1000000
        end as training_seconds,
        (epoch_us(first_completed_at) - epoch_us(first_uploading_at)) / 1000000 as upload_seconds,
        (epoch_us(first_completed_at) - epoch_us(first_event_at)) / 1000000 as time_to_complete_seconds
    from step_times
    left join training_time on step_times.job_id = training_time.job_id
),

current_intervals as (
    select
        job_id,
        status as current_status,
        entered_at as current_since
    from intervals
    where is_open
),

outcomes as (
    select
        job_id,
        case first_end_seq
            when first_completed_seq then 'succeeded'
            when first_failed_seq then 'failed'
            when first_cancelled_seq then 'cancelled'
        end as first_outcome,
        first_failed_seq is not null as ever_failed
    from milestones
)

select
    job_ids.job_id,
    jobs_listed.model_output_name,
    jobs_listed.base_model,
    jobs_listed.training_type,
    jobs_listed.training_method,
    jobs_listed.api_status,
    coalesce(milestones.first_event_at, jobs_listed.created_at) as first_seen_at,
    current_intervals.current_status,
    current_intervals.current_since,
    milestones.first_pending_at,
    milestones.first_running_at,
    training_events.training_started_at,
    training_events.training_completed_at,
    milestones.first_uploading_at,
    milestones.first_completed_at,
    milestones.first_failed_at,
    milestones.first_cancelled_at,
    coalesce(outcomes.first_outcome, 'in_flight') as first_outcome,
    coalesce(outcomes.ever_failed, false) as ever_failed,
    coalesce(training_events.restarts, 0) as restarts,
    step_timings.queue_seconds,
    step_timings.setup_seconds,
    step_timings.training_seconds,
    step_timings.upload_seconds,
    step_timings.time_to_complete_seconds
from job_ids
left join jobs_listed on job_ids.job_id = jobs_listed.job_id
left join milestones on job_ids.job_id = milestones.job_id
left join training_events on job_ids.job_id = training_events.job_id
left join current_intervals on job_ids.job_id = current_intervals.job_id
left join outcomes on job_ids.job_id = outcomes.job_id
left join step_timings on job_ids.job_id = step_timings.job_id
