-- one row per job: where it is now, when it first reached each status, how its first attempt ended, and how long
-- file validation, the queue and training took. statuses come from status_intervals (see status_events.sql for how
-- exact each is); created_to_finished_seconds is the api's own finished_at - created_at, exact to the second.
-- training_seconds is the time spent running (the sum of the job's running intervals, pauses apart), null until the
-- job has reached a terminal status after it ran.
with jobs_listed as (
    select
        id as job_id,
        fine_tuned_model,
        model as base_model,
        suffix,
        method,
        lower(status) as api_status,
        created_at,
        finished_at,
        trained_tokens,
        error_code
    from jobs
),

intervals as (
    select
        job_id,
        interval_seq,
        status,
        entered_at,
        is_open,
        duration_seconds
    from status_intervals
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
        min(case when status = 'validating_files' then entered_at end) as first_validating_at,
        min(case when status = 'queued' then entered_at end) as first_queued_at,
        min(case when status = 'running' then entered_at end) as first_running_at,
        min(case when status = 'succeeded' then entered_at end) as first_succeeded_at,
        min(case when status = 'failed' then entered_at end) as first_failed_at,
        min(case when status = 'cancelled' then entered_at end) as first_cancelled_at,
        min(case when status in ({{ terminal }}) then interval_seq end) as first_end_seq,
        min(case when status = 'succeeded' then interval_seq end) as first_succeeded_seq,
        min(case when status = 'failed' then interval_seq end) as first_failed_seq,
        min(case when status = 'cancelled' then interval_seq end) as first_cancelled_seq,
        max(case when status in ({{ terminal }}) then interval_seq end) as last_end_seq,
        min(case when status = 'running' then interval_seq end) as first_running_seq,
        sum(case when status = 'running' and not is_open then duration_seconds end) as running_seconds
    from intervals
    group by job_id
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
            when first_succeeded_seq then 'succeeded'
            when first_failed_seq then 'failed'
            when first_cancelled_seq then 'cancelled'
        end as first_outcome,
        first_failed_seq is not null as ever_failed
    from milestones
)

select
    job_ids.job_id,
    jobs_listed.fine_tuned_model,
    jobs_listed.base_model,
    jobs_listed.suffix,
    jobs_listed.method,
    jobs_listed.api_status,
    coalesce(milestones.first_event_at, jobs_listed.created_at) as first_seen_at,
    current_intervals.current_status,
    current_intervals.current_since,
    milestones.first_validating_at,
    milestones.first_queued_at,
    milestones.first_running_at,
    milestones.first_succeeded_at,
    milestones.first_failed_at,
    milestones.first_cancelled_at,
    jobs_listed.finished_at,
    coalesce(outcomes.first_outcome, 'in_flight') as first_outcome,
    coalesce(outcomes.ever_failed, false) as ever_failed,
    jobs_listed.error_code,
    jobs_listed.trained_tokens,
    -- exact elapsed seconds from utc epoch microseconds, whatever the session time zone
    (epoch_us(milestones.first_queued_at) - epoch_us(milestones.first_validating_at)) / 1000000 as validation_seconds,
    (epoch_us(milestones.first_running_at) - epoch_us(milestones.first_queued_at)) / 1000000 as queue_seconds,
    case
        when milestones.last_end_seq > milestones.first_running_seq then coalesce(milestones.running_seconds, 0)
    end as training_seconds,
    (epoch_us(milestones.first_succeeded_at) - epoch_us(jobs_listed.created_at)) / 1000000
        as time_to_succeed_seconds,
    (epoch_us(jobs_listed.finished_at) - epoch_us(jobs_listed.created_at)) / 1000000 as created_to_finished_seconds
from job_ids
left join jobs_listed on job_ids.job_id = jobs_listed.job_id
left join milestones on job_ids.job_id = milestones.job_id
left join current_intervals on job_ids.job_id = current_intervals.job_id
left join outcomes on job_ids.job_id = outcomes.job_id
