{{ config(unique_key=['site_name', 'point_name', 'day']) }}

-- What coverage and gaps need, per site, point and UTC day, with that day's gaps as a list. An
-- incremental build recomputes whole (site, day)s that received new samples; keeping the gaps inside the
-- point-day row is what lets late data that fills a gap remove it (delete+insert keyed by gap could not).
--
-- Expected range: the first to the last sample of any point of the site that day, so a partial
-- extraction window is not missing data. Expected interval: points.collect_interval, else the point's
-- median step that day. A step longer than gap_tolerance x the interval is a gap, and so is a first
-- sample that late after the range start or a last sample that early before the range end (measured
-- from the point's own samples, so a point sampling every 15 minutes is not missing the range's last 14).
-- A selected point (one the extraction windows covering the day were asked for) without samples is one
-- gap over the whole range; configured points nobody selected are not expected.
--
-- Each point-day's samples are gathered into one ordered list and its steps and gaps computed on that
-- list: much cheaper than a window over every sample.

{%- set k = var('gap_tolerance') %}

with new_samples as (
    select min("timestamp") as first_at, max("timestamp") as last_at
    from {{ ref('timeseries_raw') }}
    where {{ written_since_last_build() }}
),

point_samples as (
    select
        site_name,
        point_name,
        {{ utc_day('"timestamp"') }} as day,
        list("timestamp" order by "timestamp") as sample_times,
        bool_or({{ written_since_last_build() }}) as has_new_samples
    from {{ ref('timeseries_raw') }}
    where "timestamp" >= (select {{ utc_day('first_at') }} from new_samples)
      and "timestamp" < (select {{ utc_day('last_at') }} + interval 1 day from new_samples)
    group by site_name, point_name, day
),

site_days as (
    select site_name, day, min(sample_times[1]) as range_start, max(sample_times[-1]) as range_end
    from point_samples
    group by site_name, day
    having bool_or(has_new_samples)
),

expected_points as (
    select site_name, point_name, day from point_samples semi join site_days using (site_name, day)
    union
    select selected.site_name, selected.point_name, site_days.day
    from {{ ref('stg_landing__selections') }} as selected
    join site_days
        on selected.site_name = site_days.site_name
        and selected.window_start < site_days.day + interval 1 day
        and selected.window_end > site_days.day
),

point_days as (
    select
        expected_points.site_name,
        expected_points.point_name,
        expected_points.day,
        site_days.range_start,
        site_days.range_end,
        coalesce(point_samples.sample_times, []) as sample_times,
        -- steps[i] is the time from sample i to sample i + 1, in seconds
        list_transform(
            list_slice(sample_times, 2, len(sample_times)),
            lambda later, i: epoch(later - sample_times[i])
        ) as steps,
        case when points.collect_interval > 0 then points.collect_interval end as collect_interval
    from expected_points
    join site_days using (site_name, day)
    left join point_samples using (site_name, point_name, day)
    left join {{ ref('points') }} as points using (site_name, point_name)
),

intervals as (
    select
        * exclude (collect_interval),
        len(sample_times) as received_samples,
        sample_times[1] as first_sample_at,
        sample_times[-1] as last_sample_at,
        coalesce(collect_interval, list_median(steps))::double as expected_interval_s,
        -- the samples of one point's grid that fit between range start and end
        (floor(epoch(range_end - range_start) / expected_interval_s) + 1)::bigint as expected_samples
    from point_days
),

gapped as (
    select
        *,
        list_concat(
            list_filter(
                [{
                    'gap_start': range_start,
                    'gap_end': first_sample_at,
                    'missing_samples': floor(epoch(first_sample_at - range_start) / expected_interval_s)::bigint
                }],
                lambda gap: epoch(gap.gap_end - gap.gap_start) > {{ k }} * expected_interval_s
            ),
            list_transform(
                list_filter(range(1, received_samples), lambda i: steps[i] > {{ k }} * expected_interval_s),
                lambda i: {
                    'gap_start': sample_times[i],
                    'gap_end': sample_times[i + 1],
                    'missing_samples': (round(steps[i] / expected_interval_s) - 1)::bigint
                }
            ),
            list_filter(
                [{
                    'gap_start': last_sample_at,
                    'gap_end': range_end,
                    'missing_samples': floor(epoch(range_end - last_sample_at) / expected_interval_s)::bigint
                }],
                lambda gap: epoch(gap.gap_end - gap.gap_start) > {{ k }} * expected_interval_s
            ),
            list_filter(
                [{'gap_start': range_start, 'gap_end': range_end, 'missing_samples': expected_samples}],
                lambda gap: received_samples = 0
            )
        ) as gaps
    from intervals
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
from gapped
order by site_name, point_name, day
