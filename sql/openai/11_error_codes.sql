-- one row per error code of the jobs whose current status is failed: how many jobs, their share of every failed job,
-- when the first and the last of them finished, and one message the api gave with that code. a failed job without
-- an error is counted under '(none)'.
with failed_jobs as (
    select
        coalesce(error_code, '(none)') as error_code,
        error_message,
        finished_at
    from jobs
    where lower(status) = 'failed'
),

code_counts as (
    select
        error_code,
        count(*) as jobs,
        min(finished_at) as first_finished_at,
        max(finished_at) as last_finished_at,
        min(error_message) as example_message
    from failed_jobs
    group by error_code
),

failed_total as (
    select count(*) as failed_jobs
    from failed_jobs
)

select
    code_counts.error_code,
    code_counts.jobs,
    cast(code_counts.jobs as double) / failed_total.failed_jobs as share_of_failed,
    code_counts.first_finished_at,
    code_counts.last_finished_at,
    code_counts.example_message
from code_counts
cross join failed_total
