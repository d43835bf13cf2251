-- one row per maximal run of one status of one {{ item }}, in event order;
-- the last interval of a {{ item }} is open and its duration runs to the time of the query.
-- every window orders by columns that are never null, written `nulls first`: that is bigquery's default, which
-- cannot state another null order in a window, so each dialect is given the same order.
-- the provider's status events (sql/<provider>/status_events.sql) end in ranked_events: the id, entered_by,
-- status, created_at, lifecycle_rank and two tie-breakers for events of one timestamp.
with {{ status_events }},

ordered_events as (
    select
        {{ id }},
        entered_by,
        status,
        created_at,
        row_number() over (
            partition by {{ id }}
            order by created_at nulls first, lifecycle_rank nulls first, first_tie nulls first, second_tie nulls first
        ) as event_seq
    from ranked_events
),

status_changes as (
    select
        {{ id }},
        entered_by,
        status,
        created_at,
        event_seq,
        case
            when lag(status) over (partition by {{ id }} order by event_seq nulls first) = status then 0
            else 1
        end as starts_interval
    from ordered_events
),

numbered_events as (
    select
        {{ id }},
        entered_by,
        status,
        created_at,
        starts_interval,
        cast(sum(starts_interval) over (
            partition by {{ id }}
            order by event_seq nulls first
            rows between unbounded preceding and current row
        ) as bigint) as interval_seq
    from status_changes
),

intervals as (
    select
        {{ id }},
        interval_seq,
        status,
        min(created_at) as entered_at,
        count(*) as n_events,
        max(case when starts_interval = 1 then entered_by end) as entered_by
    from numbered_events
    group by {{ id }}, interval_seq, status
),

linked_intervals as (
    select
        {{ id }},
        interval_seq,
        status,
        entered_at,
        lead(entered_at) over (partition by {{ id }} order by interval_seq nulls first) as exited_at,
        n_events,
        lag(status) over (partition by {{ id }} order by interval_seq nulls first) as prev_status,
        lead(status) over (partition by {{ id }} order by interval_seq nulls first) as next_status,
        entered_by
    from intervals
)

select
    {{ id }},
    interval_seq,
    status,
    entered_at,
    exited_at,
    exited_at is null as is_open,
    -- exact elapsed seconds from utc epoch microseconds, whatever the session time zone
    (epoch_us(coalesce(exited_at, current_timestamp)) - epoch_us(entered_at)) / 1000000 as duration_seconds,
    n_events,
    prev_status,
    next_status,
    entered_by
from linked_intervals
