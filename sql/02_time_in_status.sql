-- one row per {{ item }} and status: how often and how long the {{ item }} has been in it
with intervals as (
    select
        {{ id }},
        status,
        is_open,
        duration_seconds
    from status_intervals
)

select
    {{ id }},
    status,
    count(*) as visits,
    sum(duration_seconds) as total_seconds,
    coalesce(sum(case when not is_open then duration_seconds end), 0) as closed_seconds,
    bool_or(is_open) as currently_in
from intervals
group by {{ id }}, status
