-- one row per cohort week (the utc monday of the week of each {{ item }}'s first event):
-- how first attempts ended, the failure rate and its wilson 95% bounds
select
    cohort_week,
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
where grouped_by = 'cohort_week'
