-- one row per {{ item }} and metric of its training: steps logged, the first and last step, the last value and the best
with step_values as (
    select
        {{ id }},
        metric,
        {{ step }},
        {{ step_at }},
        value,
        -- nan - nan and infinity - infinity are nan, and nan = 0 is false: true for finite values only
        coalesce(value - value = 0, false) as is_finite,
        lower(metric) like '%loss%' or lower(metric) like '%entropy%' as lower_is_better
    from {{ metrics_table }}
),

numbered_steps as (
    select
        {{ id }},
        metric,
        {{ step }},
        {{ step_at }},
        value,
        count(*) over (partition by {{ id }}, metric) as steps,
        row_number() over (partition by {{ id }}, metric order by {{ step }}) as from_first,
        row_number() over (partition by {{ id }}, metric order by {{ step }} desc) as from_last
    from step_values
),

first_steps as (
    select
        {{ id }},
        metric,
        {{ step }},
        {{ step_at }}
    from numbered_steps
    where from_first = 1
),

last_steps as (
    select
        {{ id }},
        metric,
        steps,
        {{ step }},
        {{ step_at }},
        value
    from numbered_steps
    where from_last = 1
),

ranked_finite_steps as (
    select
        {{ id }},
        metric,
        {{ step }},
        value,
        row_number() over (
            partition by {{ id }}, metric
            order by case when lower_is_better then value else -value end, {{ step }}
        ) as best_rank
    from step_values
    where is_finite
),

best_steps as (
    select
        {{ id }},
        metric,
        {{ step }},
        value
    from ranked_finite_steps
    where best_rank = 1
)

select
    last_steps.{{ id }},
    last_steps.metric,
    last_steps.steps,
    first_steps.{{ step }} as first_step_number,
    last_steps.{{ step }} as last_step_number,
    first_steps.{{ step_at }} as first_step_at,
    last_steps.{{ step_at }} as last_step_at,
    last_steps.value as last_value,
    best_steps.value as best_value,
    best_steps.{{ step }} as best_step_number
from last_steps
inner join first_steps
    on last_steps.{{ id }} = first_steps.{{ id }} and last_steps.metric = first_steps.metric
left join best_steps
    on last_steps.{{ id }} = best_steps.{{ id }} and last_steps.metric = best_steps.metric
