-- one row per cohort week (the utc monday of the week of each model's first event):
-- how first attempts ended, the failure rate and its wilson 95% bounds
with lifecycles as (
    select
        cast(date_trunc('week', first_seen_at at time zone 'UTC') as date) as cohort_week,
        first_outcome
    from model_lifecycle
),

outcome_counts as (
    select
        cohort_week,
        count(*) as models,
        count(*) filter (where first_outcome = 'ready') as ready,
        count(*) filter (where first_outcome = 'failed') as failed,
        count(*) filter (where first_outcome = 'cancelled') as cancelled,
        count(*) filter (where first_outcome = 'in_flight') as in_flight
    from lifecycles
    group by cohort_week
),

rates as (
    select
        cohort_week,
        models,
        ready,
        failed,
        cancelled,
        in_flight,
        ready + failed as resolved,
        cast(failed as double) / nullif(ready + failed, 0) as failure_rate,
        1.96 * 1.96 / nullif(ready + failed, 0) as z_squared_over_n
    from outcome_counts
),

wilson_terms as (
    select
        cohort_week,
        models,
        ready,
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
    cohort_week,
    models,
    ready,
    failed,
    cancelled,
    in_flight,
    resolved,
    failure_rate,
    case when resolved > 0 then greatest(0.0, center - margin) end as wilson_low,
    case when resolved > 0 then least(1.0, center + margin) end as wilson_high
from wilson_terms
