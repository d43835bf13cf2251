-- one row per model that logged training metrics: its final and best accuracy and cross-entropy beside its
-- base model and how its first attempt ended, and whether a loss-like metric ever went non-finite (diverged)
with summaries as (
    select
        finetuned_model_id,
        metric,
        steps,
        last_step_number,
        last_step_at,
        last_value,
        best_value
    from training_summary
),

finals as (
    select
        finetuned_model_id,
        count(*) as metrics,
        max(steps) as steps,
        max(last_step_number) as last_step_number,
        max(last_step_at) as last_step_at,
        max(case when metric = 'accuracy' then last_value end) as final_accuracy,
        max(case when metric = 'accuracy' then best_value end) as best_accuracy,
        max(case when metric = 'cross_entropy' then last_value end) as final_cross_entropy,
        max(case when metric = 'cross_entropy' then best_value end) as best_cross_entropy
    from summaries
    group by finetuned_model_id
),

non_finite_losses as (
    -- nan - nan and infinity - infinity are nan, and nan = 0 is false: true for non-finite values
    select
        finetuned_model_id,
        min(step_number) as first_non_finite_step
    from training_step_metrics
    where
        (lower(metric) like '%loss%' or lower(metric) like '%entropy%')
        and not coalesce(value - value = 0, false)
    group by finetuned_model_id
),

lifecycles as (
    select
        finetuned_model_id,
        name,
        base_type,
        base_model_name,
        current_status,
        first_outcome,
        training_seconds
    from model_lifecycle
)

select
    finals.finetuned_model_id,
    lifecycles.name,
    lifecycles.base_type,
    lifecycles.base_model_name,
    lifecycles.current_status,
    lifecycles.first_outcome,
    lifecycles.training_seconds,
    finals.metrics,
    finals.steps,
    finals.last_step_number,
    finals.last_step_at,
    finals.final_accuracy,
    finals.best_accuracy,
    finals.final_cross_entropy,
    finals.best_cross_entropy,
    non_finite_losses.first_non_finite_step,
    non_finite_losses.first_non_finite_step is not null as diverged
from finals
left join lifecycles on finals.finetuned_model_id = lifecycles.finetuned_model_id
left join non_finite_losses on finals.finetuned_model_id = non_finite_losses.finetuned_model_id
