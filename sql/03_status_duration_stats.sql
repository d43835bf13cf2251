-- one row per status: how long closed intervals of it lasted (open intervals are only counted).
-- p50 and p90 interpolate linearly between the closed durations at positions floor(h) and ceil(h), h = (n - 1) * p,
-- counted from 0 in ascending order: exactly duckdb's quantile_cont and postgresql's percentile_cont, written out
-- because bigquery has no exact percentile aggregate.
with intervals as (
    select
        {{ id }},
        status,
        is_open,
        case when not is_open then duration_seconds end as closed_seconds
    from status_intervals
),

counts as (
    select
        status,
        count(closed_seconds) as closed_intervals,
        count(case when is_open then 1 end) as open_intervals,
        count(distinct {{ id }}) as {{ items }},
        avg(closed_seconds) as avg_seconds,
        max(closed_seconds) as max_seconds
    from intervals
    group by status
),

ranked_closed as (
    -- closed_seconds is never null here: `nulls first` is only there for bigquery (see status_intervals)
    select
        status,
        closed_seconds,
        row_number() over (partition by status order by closed_seconds nulls first) - 1 as position,
        (count(*) over (partition by status) - 1) * 0.5 as p50_position,
        (count(*) over (partition by status) - 1) * 0.9 as p90_position
    from intervals
    where closed_seconds is not null
),

quantile_bounds as (
    select
        status,
        max(case when position = floor(p50_position) then closed_seconds end) as p50_low,
        max(case when position = ceil(p50_position) then closed_seconds end) as p50_high,
        max(p50_position - floor(p50_position)) as p50_fraction,
        max(case when position = floor(p90_position) then closed_seconds end) as p90_low,
        max(case when position = ceil(p90_position) then closed_seconds end) as p90_high,
        max(p90_position - floor(p90_position)) as p90_fraction
    from ranked_closed
    group by status
)

select
    counts.status,
    counts.closed_intervals,
    counts.open_intervals,
    counts.{{ items }},
    counts.avg_seconds,
    quantile_bounds.p50_low + (quantile_bounds.p50_high - quantile_bounds.p50_low) * quantile_bounds.p50_fraction
        as p50_seconds,
    quantile_bounds.p90_low + (quantile_bounds.p90_high - quantile_bounds.p90_low) * quantile_bounds.p90_fraction
        as p90_seconds,
    counts.max_seconds
from counts
left join quantile_bounds on counts.status = quantile_bounds.status
