-- {{ items }} whose current status is one still under way ({{ under_way }}) and has lasted over 48 hours
with lifecycles as (
    select
        {{ id }},
        current_status,
        current_since,
        -- exact elapsed seconds from utc epoch microseconds, whatever the session time zone
        (epoch_us(current_timestamp) - epoch_us(current_since)) / 1000000 as stuck_seconds
    from {{ lifecycle }}
    where current_status in ({{ under_way }})
)

select
    {{ id }},
    current_status,
    current_since,
    stuck_seconds
from lifecycles
where stuck_seconds > 48 * 60 * 60
