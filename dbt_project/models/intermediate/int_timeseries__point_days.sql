{{ config(unique_key=['site_name', 'point_name', 'day']) }}

-- What coverage and gaps need, per site, point and UTC day, with that day's gaps as a list. An
-- incremental build recomputes whole (site, day)s touched by new samples; keeping the gaps inside the
-- point-day row is what lets late data that fills a gap remove it (delete+insert keyed by gap could not).
--
-- Expected range: the first to the last sample of any point of the site that day, so a partial
-- extraction window is not missing data. Expected interval: points.collect_interval, else the point's
-- median step that day. A step longer than gap_tolerance x the interval is a gap; the range start and end
-- count as samples one interval outside the range, so late starts and early stops are gaps too, and an
-- enabled point without samples is one gap over the whole range.

{%- set k = var('gap_tolerance') %}

with touched as (
    select distinct site_name, {{ utc_day('"timestamp"') }} as day
    from {{ ref('timeseries_raw') }}
    where {{ written_since_last_build() }}
),

samples as (
    select site_name, point_name, {{ utc_day('"timestamp"') }} as day, "timestamp"
    from {{ ref('timeseries_raw') }}
    where "timestamp" >= (select min(day) from touched)
      and "timestamp" < (select max(day) from touched) + interval 1 day
),

touched_samples as (
    select * from samples semi join touched using (site_name, day)
),

site_days as (
    select site_name, day, min("timestamp") as range_start, max("timestamp") as range_end
    from touched_samples
    group by site_name, day
),

steps as (
    select
        site_name,
        point_name,
        day,
        "timestamp" as step_start,
        lead("timestamp") over (partition by site_name, point_name, day order by "timestamp") as step_end
    from touched_samples
),

observed as (
    select
        site_name,
        point_name,
        day,
        count(*) as received_samples,
        min(step_start) as first_sample_at,
        max(step_start) as last_sample_at,
        median(epoch(step_end - step_start)) as median_step_s
    from steps
    group by site_name, point_name, day
),

expected_points as (
    select site_name, point_name, day from observed
    union
    select points.site_name, points.point_name, site_days.day
    from {{ ref('points') }} as points
    join site_days using (site_name)
    where points.collect_enabled
),

point_days as (
    select
        expected_points.site_name,
        expected_points.point_name,
        expected_points.day,
        site_days.range_start,
        site_days.range_end,
        coalesce(observed.received_samples, 0) as received_samples,
        observed.first_sample_at,
        observed.last_sample_at,
        coalesce(
            case when points.collect_interval > 0 then points.collect_interval end,
            observed.median_step_s
        )::double as expected_interval_s
    from expected_points
    join site_days using (site_name, day)
    left join observed using (site_name, point_name, day)
    left join {{ ref('points') }} as points using (site_name, point_name)
),

gaps as (
    select
        steps.site_name,
        steps.point_name,
        steps.day,
        steps.step_start as gap_start,
        steps.step_end as gap_end,
        round(epoch(steps.step_end - steps.step_start) / point_days.expected_interval_s) - 1 as missing_samples
    from steps
    join point_days using (site_name, point_name, day)
    where epoch(steps.step_end - steps.step_start) > {{ k }} * point_days.expected_interval_s

    union all

    select
        site_name, point_name, day, range_start, first_sample_at,
        round(epoch(first_sample_at - range_start) / expected_interval_s)
    from point_days
    where epoch(first_sample_at - range_start) > ({{ k }} - 1) * expected_interval_s

    union all

    select
        site_name, point_name, day, last_sample_at, range_end,
        round(epoch(range_end - last_sample_at) / expected_interval_s)
    from point_days
    where epoch(range_end - last_sample_at) > ({{ k }} - 1) * expected_interval_s

    union all

    select
        site_name, point_name, day, range_start, range_end,
        round(epoch(range_end - range_start) / expected_interval_s) + 1
    from point_days
    where received_samples = 0
),

gap_lists as (
    select
        site_name,
        point_name,
        day,
        list(
            {'gap_start': gap_start, 'gap_end': gap_end, 'missing_samples': missing_samples::bigint}
            order by gap_start
        ) as gaps
    from gaps
    group by site_name, point_name, day
),

counted as (
    select
        point_days.*,
        (round(epoch(range_end - range_start) / expected_interval_s) + 1)::bigint as expected_samples,
        coalesce(gap_lists.gaps, []) as gaps
    from point_days
    left join gap_lists using (site_name, point_name, day)
)

select
    site_name,
    point_name,
    day,
    range_start,
    range_end,
    expected_interval_s,
    expected_samples,
    received_samples,
    case when received_samples = 0 then 0.0 else received_samples / expected_samples end as coverage_ratio,
    first_sample_at,
    last_sample_at,
    gaps,
    {{ build_started_at() }} as created_at
from counted
order by site_name, point_name, day
