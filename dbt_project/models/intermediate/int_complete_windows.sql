{{ config(materialized='table') }}

-- The time each site's committed windows cover, as non-overlapping ranges: the windows of runs that
-- completed (etl_runs `complete`; a `skipped` window was completed by an earlier run, which has its own
-- row), adjacent or overlapping ones merged. Small: one row per stretch of committed windows.

with windows as (
    select distinct site_name, window_start, window_end
    from {{ ref('etl_runs') }}
    where status = 'complete' and window_end > window_start
),

reached as (
    select
        *,
        max(window_end) over (
            partition by site_name order by window_start, window_end
            rows between unbounded preceding and 1 preceding
        ) as reached_before
    from windows
),

numbered as (
    select
        *,
        sum(case when reached_before is null or window_start > reached_before then 1 else 0 end)
            over (partition by site_name order by window_start, window_end) as stretch
    from reached
)

select site_name, min(window_start) as range_start, max(window_end) as range_end
from numbered
group by site_name, stretch
order by site_name, range_start
