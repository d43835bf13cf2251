-- one row per base model: how many of its jobs report trained tokens (the api gives them once a job has succeeded),
-- and their total, mean and largest.
with tokens as (
    select
        model as base_model,
        trained_tokens
    from jobs
    where trained_tokens is not null
)

select
    base_model,
    count(*) as jobs,
    sum(trained_tokens) as trained_tokens,
    avg(trained_tokens) as avg_trained_tokens,
    max(trained_tokens) as max_trained_tokens
from tokens
group by base_model
