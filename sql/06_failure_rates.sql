-- one row over all {{ items }}: how first attempts ended, the failure rate and its wilson 95% bounds
select
    {{ items }},
    {{ succeeded }},
    failed,
    cancelled,
    in_flight,
    resolved,
    failure_rate,
    wilson_low,
    wilson_high
from failure_rate_groups
where grouped_by = 'all_models'
