-- one row per phase of a job that its event log shows: model download, data download (training and validation
-- files), training, compression and upload. a phase starts with its start event and ends at the first of: its end
-- event, the next start of the same phase, or the job's end or restart (complete, error, user error, stopped,
-- restarted).
-- with none of those it is open, and its duration runs to the time of the query.
with phase_events as (
    select
        job_id,
        created_at,
        lower(type) as type,
        case lower(type)
            when 'model_downloading' then 'model_download'
            when 'model_download_complete' then 'model_download'
            when 'training_data_downloading' then 'data_download'
            when 'training_data_download_complete' then 'data_download'
            when 'validation_data_downloading' then 'data_download'
            when 'validation_data_download_complete' then 'data_download'
            when 'training_start' then 'training'
            when 'training_complete' then 'training'
            when 'model_compressing' then 'compression'
            when 'compressing_model' then 'compression'
            when 'model_compression_complete' then 'compression'
            when 'model_uploading' then 'upload'
            when 'model_upload_complete' then 'upload'
        end as phase,
        case
            when lower(type) in (
                'model_downloading', 'training_data_downloading', 'validation_data_downloading', 'training_start',
                'model_compressing', 'compressing_model', 'model_uploading'
            ) then 'start'
            when lower(type) in ('job_complete', 'job_error', 'job_user_error', 'job_stopped', 'job_restarted')
                then 'job_end'
            else 'end'
        end as edge
    from job_events
    where created_at is not null
),

phase_starts as (
    select
        job_id,
        phase,
        created_at as started_at,
        lead(created_at) over (partition by job_id, phase order by created_at nulls first) as next_start_at,
        row_number() over (partition by job_id, phase order by created_at nulls first) as phase_seq
    from phase_events
    where edge = 'start' and phase is not null
),

phase_stops as (
    select
        job_id,
        phase,
        created_at
    from phase_events
    where edge = 'end' and phase is not null
    union all
    select
        job_id,
        cast(null as text) as phase,
        created_at
    from phase_events
    where edge = 'job_end'
),

first_stops as (
    select
        phase_starts.job_id,
        phase_starts.phase,
        phase_starts.phase_seq,
        min(phase_stops.created_at) as stopped_at
    from phase_starts
    inner join phase_stops
        on
            phase_starts.job_id = phase_stops.job_id
            and (phase_stops.phase = phase_starts.phase or phase_stops.phase is null)
            and phase_stops.created_at >= phase_starts.started_at
    group by phase_starts.job_id, phase_starts.phase, phase_starts.phase_seq
),

phases as (
    select
        phase_starts.job_id,
        phase_starts.phase,
        phase_starts.phase_seq,
        phase_starts.started_at,
        case
            when first_stops.stopped_at is null then phase_starts.next_start_at
            when phase_starts.next_start_at is null then first_stops.stopped_at
            when first_stops.stopped_at <= phase_starts.next_start_at then first_stops.stopped_at
            else phase_starts.next_start_at
        end as ended_at
    from phase_starts
    left join first_stops
        on
            phase_starts.job_id = first_stops.job_id
            and phase_starts.phase = first_stops.phase
            and phase_starts.phase_seq = first_stops.phase_seq
)

select
    job_id,
    phase,
    phase_seq,
    started_at,
    ended_at,
    ended_at is null as is_open,
    -- exact elapsed seconds from utc epoch microseconds, whatever the session time zone
    (epoch_us(coalesce(ended_at, current_timestamp)) - epoch_us(started_at)) / 1000000 as duration_seconds
from phases
