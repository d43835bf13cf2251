-- one row per model and metric of its training: steps logged, the first and last step, the last value and the best
with step_values as (
    select
        finetuned_model_id,
        metric,
        step_number,
        created_at,
        value,
        -- nan - nan and infinity - infinity are nan, and nan = 0 is false: true for finite values only
        coalesce(value - value = 0, false) as is_finite,
        lower(metric) like '%loss%' or lower(metric) like '%entropy%' as lower_is_better
    from training_step_metrics
),

numbered_steps as (
    select
        finetuned_model_id,
        metric,
        step_number,
        created_at,
        value,
        count(*) over (partition by finetuned_model_id, metric) as steps,
        row_number() over (partition by finetuned_model_id, metric order by step_number) as from_first,
        row_number() over (partition by finetuned_model_id, metric order by step_number desc) as from_last
    from step_values
),

first_steps as (
    select
        finetuned_model_id,
        metric,
        step_number,
        created_at
    from numbered_steps
    where from_first = 1
),

last_steps as (
    select
        finetuned_model_id,
        metric,
        steps,
        step_number,
        created_at,
        value
    from numbered_steps
    where from_last = 1
),

ranked_finite_steps as (
    select
        finetuned_model_id,
        metric,
        step_number,
        value,
        row_number() over (
            partition by finetuned_model_id, metric
            order by case when lower_is_better then value else -value end, step_number
        ) as best_rank
    from step_values
    where is_finite
),

best_steps as (
    select
        finetuned_model_id,
        metric,
        step_number,
        value
    from ranked_finite_steps
    where best_rank = 1
)

select
    last_steps.finetuned_model_id,
    last_steps.metric,
    last_steps.steps,
    first_steps.step_number as first_step_number,
    last_steps.step_number as last_step_number,
    first_steps.created_at as first_step_at,
    last_steps.created_at as last_step_at,
    last_steps.value as last_value,
    best_steps.value as best_value,
    best_steps.step_number as best_step_number
from last_steps
inner join first_steps
    on last_steps.finetuned_model_id = first_steps.finetuned_model_id and last_steps.metric = first_steps.metric
left join best_steps
    on last_steps.finetuned_model_id = best_steps.finetuned_model_id and last_steps.metric = best_steps.metric
