-- one row over all models: how first attempts ended, the failure rate and its wilson 95% bounds
select
    models,
    ready,
    failed,
    cancelled,
    in_flight,
    resolved,
    failure_rate,
    wilson_low,
    wilson_high
from failure_rate_groups
where grouped_by = 'all_models'
