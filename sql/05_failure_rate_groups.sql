-- how first attempts ended, the failure rate and its wilson 95% bounds, computed once for every grouping the
-- failure_rates views show: over all {{ items }}, per cohort week (the utc monday of the week of a {{ item }}'s first
-- event) and per base model. each of those views selects its own grouping from here.
with lifecycle_days as (
    select
        cast(first_seen_at at time zone 'UTC' as date) as first_seen_day,
        {{ base_model }},
        first_outcome
    from {{ lifecycle }}
),

lifecycles as (
    -- the monday on or before the day, counted from monday 1970-01-05: date_trunc('week') would start weeks on
    -- sunday on bigquery and on the session's week_start on snowflake
    select
        first_seen_day - cast(((date_diff('day', date '1970-01-05', first_seen_day) % 7) + 7) % 7 as integer)
            as cohort_week,
        {{ base_model }},
        first_outcome
    from lifecycle_days
),

outcome_counts as (
    select
        case
            when grouping(cohort_week) = 0 then 'cohort_week'
            when grouping({{ base_model_key }}) = 0 then 'base_model'
            else 'all_models'
        end as grouped_by,
        cohort_week,
        {{ base_model }},
        count(*) as {{ items }},
        count(case when first_outcome = '{{ succeeded }}' then 1 end) as {{ succeeded }},
        count(case when first_outcome = 'failed' then 1 end) as failed,
        count(case when first_outcome = 'cancelled' then 1 end) as cancelled,
        count(case when first_outcome = 'in_flight' then 1 end) as in_flight
    from lifecycles
    group by grouping sets ((), (cohort_week), ({{ base_model }}))
),

rates as (
    select
        grouped_by,
        cohort_week,
        {{ base_model }},
        {{ items }},
        {{ succeeded }},
        failed,
        cancelled,
        in_flight,
        {{ succeeded }} + failed as resolved,
        cast(failed as double) / nullif({{ succeeded }} + failed, 0) as failure_rate,
        1.96 * 1.96 / nullif({{ succeeded }} + failed, 0) as z_squared_over_n
    from outcome_counts
    -- the grouping over all {{ items }} has a row even when there are none: leave it out
    where {{ items }} > 0
),

wilson_terms as (
    select
        grouped_by,
        cohort_week,
        {{ base_model }},
        {{ items }},
        {{ succeeded }},
        failed,
        cancelled,
        in_flight,
        resolved,
        failure_rate,
        (failure_rate + z_squared_over_n / 2) / (1 + z_squared_over_n) as center,
        1.96 * sqrt(
            failure_rate * (1 - failure_rate) / nullif(resolved, 0)
            + z_squared_over_n / (4 * nullif(resolved, 0))
        ) / (1 + z_squared_over_n) as margin
    from rates
)

select
    grouped_by,
    cohort_week,
    {{ base_model }},
    {{ items }},
    {{ succeeded }},
    failed,
    cancelled,
    in_flight,
    resolved,
    failure_rate,
    -- exactly 0 and 1 at the ends: the formula leaves rounding dust there (2.8e-17 for 0 of 4)
    case when resolved > 0 then case when failed = 0 then 0.0 else greatest(0.0, center - margin) end end
        as wilson_low,
    case when resolved > 0 then case when failed = resolved then 1.0 else least(1.0, center + margin) end end
        as wilson_high
from wilson_terms
