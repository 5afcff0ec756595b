{{ config(
    unique_key=['site_name', 'point_name', 'day'],
    full_refresh=false,
    on_schema_change='append_new_columns',
    pre_hook=["{{ track_landing('selections') }}", "{{ forget_local_days() }}"],
    post_hook=["{{ landing_loaded() }}", "{{ promote_complete('bucket.day_start', 'bucket.day_end') }}"],
) }}
-- depends_on: {{ ref('lake_changes') }}
-- depends_on: {{ ref('int_site_zone_changes') }}
-- depends_on: {{ ref('int_local_days') }}
-- After timeseries_hourly and timeseries_daily, with timeseries_anomalies after it: a backfill's point-day
-- lists need most of the memory limit, which one DuckDB process shares between the queries it runs, and
-- beside a model that aggregates hourly the lists spill (a year's backfill: point-days beside hourly took
-- 410 CPU-s, after it 303; beside anomalies 106 s of a 122 s build, beside daily and hourly's tests 86 s of
-- 114 s, alone 38 s of 67 s).
-- depends_on: {{ ref('timeseries_hourly') }}
-- depends_on: {{ ref('timeseries_daily') }}

-- What coverage and gaps need, per site, point and site-local day (sites.time_zone: a day of 23 or 25
-- hours when the clocks change), with that day's gaps as a list. An incremental build recomputes exactly
-- the local days overlapping a Delta partition that changed since the last build (int_local_days, reading
-- the partitions those days overlap), the local days that received a new extraction window, and every day
-- of a site whose zone changed (int_site_zone_changes), however far apart they are (healing a day a month
-- back does not recompute the month); keeping the gaps inside the point-day row is what lets late data
-- that fills a gap remove it. Never fully refreshed (full_refresh=false): `--full-refresh` recomputes
-- every day that still has raw files, and the days whose raw samples are gone (retention) stay.
--
-- Expected range: what was asked. The extraction windows that cover the day (landing/selections), cut
-- to the day, half-open: a point silent from 20:00 in a window ending at 24:00 has a 4-hour gap, and a
-- selected point without any sample is one gap over the whole range. Where no window is recorded (data
-- landed by hand), the first to the last sample of any point of the site that day, inclusive.
-- Expected interval: points.collect_interval, else the point's median step that day. A step longer than
-- gap_tolerance x the interval is a gap, and so is a first sample that late after the range start or a
-- last sample that early before the range end.
--
-- Each point-day's samples are gathered into one ordered list and its steps and gaps computed on that
-- list: much cheaper than a window over every sample.

{%- set k = var('gap_tolerance') %}
-- The zones' offsets over the instants this build reads (the changed local days, and every partition when
-- a site is recomputed whole): each sample's local day by integer arithmetic (local_day).
{%- set read_span -%}
select min(span_start), max(span_end) from (
{%- if is_incremental() %}
    select day_start, day_end from {{ lake_relation('int_local_days') }}
    union all
{%- endif %}
    select timezone('UTC', min(day)::timestamp), timezone('UTC', max(day)::timestamp) + interval 1 day
    from {{ lake_relation('lake_snapshot') }}
    where dataset = 'timeseries'
{%- if is_incremental() %}
      and exists (select 1 from {{ lake_relation('int_site_zone_changes') }})
{%- endif %}
) as spans(span_start, span_end)
{%- endset %}
{%- set offsets = zone_offsets(read_span) %}

with zones as (
    select site_name, coalesce(time_zone, 'UTC') as time_zone from {{ ref('sites') }}
),

selected as (
    select
        site_name,
        point_name,
        landing_file,
        day,
        time_zone,
        greatest(window_start, day_start) as asked_start,
        least(window_end, day_end) as asked_end
    from (
        select
            windows.*,
            days.day::date as day,
            {{ local_midnight('days.day::date', 'zones.time_zone') }} as day_start,
            {{ local_midnight('days.day::date + 1', 'zones.time_zone') }} as day_end,
            zones.time_zone
        from {{ ref('stg_landing__selections') }} as windows
        join zones using (site_name),
            unnest(generate_series(
                {{ local_day('windows.window_start', 'zones.time_zone') }},
                {{ local_day('windows.window_end - interval 1 microsecond', 'zones.time_zone') }},
                interval 1 day
            )) as days(day)
    )
),

-- Sites recomputed whole: every site on a first build, else those whose zone changed.
whole_sites as (
{%- if is_incremental() %}
    select site_name from {{ ref('int_site_zone_changes') }}
{%- else %}
    select site_name from zones
{%- endif %}
),

-- Local days overlapping a changed partition, read from the files of the partitions they overlap.
file_days as (
{%- if is_incremental() %}
    select site_name, day from {{ ref('int_local_days') }}
{%- else %}
    select null::varchar as site_name, null::date as day where false
{%- endif %}
),

-- Days with a new extraction window but no changed partition (a window that found nothing new).
window_days as (
    select distinct site_name, day, {{ local_midnight('day', 'time_zone') }} as day_start,
        {{ local_midnight('day + 1', 'time_zone') }} as day_end
    from selected
    where {{ landed_since_last_build() }}
      and site_name not in (select site_name from whole_sites)
      and (site_name, day) not in (select site_name, day from file_days)
),

point_lists as (
    select site_name, point_name, day, list("timestamp" order by "timestamp") as sample_times
    -- each sample's local day, then semi joins on (site, day): no range join over every sample
    from (
        -- an incremental build reads only the files of the partitions the changed local days overlap
        select raw.site_name, raw.point_name, raw."timestamp", {{ local_day('raw."timestamp"', 'zones.time_zone', offsets) }} as day
        from {{ lake_read('timeseries', 'local_days') if is_incremental() else ref('timeseries_raw') }} as raw
        join zones using (site_name)
        where (raw.site_name, {{ local_day('raw."timestamp"', 'zones.time_zone', offsets) }}) in (
            select site_name, day from file_days
        )
        union all
        -- rare (a first build, a site whose zone changed): every sample of the site
        select raw.site_name, raw.point_name, raw."timestamp", {{ local_day('raw."timestamp"', 'zones.time_zone', offsets) }}
        from {{ ref('timeseries_raw') }} as raw
        join zones using (site_name)
        where raw.site_name in (select site_name from whole_sites)
        union all
        -- rare (window_days only): the range lets DuckDB skip files, the semi join keeps those days
        select raw.site_name, raw.point_name, raw."timestamp", {{ local_day('raw."timestamp"', 'zones.time_zone', offsets) }}
        from {{ ref('timeseries_raw') }} as raw
        join zones using (site_name)
        where raw."timestamp" >= (select min(day_start) from window_days)
          and raw."timestamp" < (select max(day_end) from window_days)
          and (raw.site_name, {{ local_day('raw."timestamp"', 'zones.time_zone', offsets) }}) in (
              select site_name, day from window_days
          )
    ) as raw
    group by site_name, point_name, day
),

-- What a point-day's ordered samples say, whatever range was asked: the lists end here, so what is kept
-- (and read twice below) is one small row per point-day, not a backfill's every sample.
point_samples as (
    select
        site_name,
        point_name,
        day,
        len(sample_times) as received_samples,
        -- a key landed twice sits next to itself in the ordered list: this is the raw table's uniqueness
        -- check, at no cost beyond the list every build makes anyway (grouping every key of a backfill by
        -- its hash cost more than copying the samples)
        len(list_filter(steps, lambda step: step = 0)) as repeated_samples,
        sample_times[1] as first_sample_at,
        sample_times[-1] as last_sample_at,
        list_median(steps) as median_step_s,
        -- the steps longer than gap_tolerance x the interval
        list_transform(
            list_filter(range(1, len(sample_times)), lambda i: steps[i] > {{ k }} * interval_s),
            lambda i: {
                'gap_start': sample_times[i],
                'gap_end': sample_times[i + 1],
                'missing_samples': (round(steps[i] / interval_s) - 1)::bigint
            }
        ) as inner_gaps
    from (
        select
            *,
            coalesce(
                case when points.collect_interval > 0 then points.collect_interval end, list_median(steps)
            )::double as interval_s
        from (
            select
                *,
                -- steps[i] is the time from sample i to sample i + 1, in seconds
                list_transform(
                    list_slice(sample_times, 2, len(sample_times)),
                    lambda later, i: (epoch_us(later) - epoch_us(sample_times[i])) / 1000000
                ) as steps
            from point_lists
        ) as lists
        left join {{ ref('points') }} as points using (site_name, point_name)
    ) as stepped
),

changed_days as (
    select site_name, day from file_days
    union
    select site_name, day from window_days
    union
    select site_name, day from point_samples where site_name in (select site_name from whole_sites)
    union
    select site_name, day from selected where site_name in (select site_name from whole_sites)
),

asked as (
    select site_name, point_name, day, min(asked_start) as asked_start, max(asked_end) as asked_end
    from selected semi join changed_days using (site_name, day)
    group by site_name, point_name, day
),

site_days as (
    select
        changed_days.site_name,
        changed_days.day,
        site_asked.asked_start,
        site_asked.asked_end,
        site_samples.first_at,
        site_samples.last_at
    from changed_days
    left join (
        select site_name, day, min(asked_start) as asked_start, max(asked_end) as asked_end
        from asked group by site_name, day
    ) as site_asked using (site_name, day)
    left join (
        select site_name, day, min(first_sample_at) as first_at, max(last_sample_at) as last_at
        from point_samples group by site_name, day
    ) as site_samples using (site_name, day)
),

point_days as (
    select
        site_name,
        point_name,
        day,
        -- the point's own asked range, else the site's, else the site's samples (inclusive end)
        coalesce(asked.asked_start, site_days.asked_start, site_days.first_at) as range_start,
        coalesce(asked.asked_end, site_days.asked_end, site_days.last_at) as range_end,
        coalesce(asked.asked_end, site_days.asked_end) is not null as half_open,
        coalesce(point_samples.received_samples, 0) as received_samples,
        coalesce(point_samples.repeated_samples, 0) as repeated_samples,
        point_samples.first_sample_at,
        point_samples.last_sample_at,
        coalesce(
            case when points.collect_interval > 0 then points.collect_interval end, point_samples.median_step_s
        )::double as expected_interval_s,
        coalesce(point_samples.inner_gaps, []) as inner_gaps
    from (select site_name, point_name, day from point_samples union select site_name, point_name, day from asked)
    join site_days using (site_name, day)
    left join asked using (site_name, point_name, day)
    left join point_samples using (site_name, point_name, day)
    left join {{ ref('points') }} as points using (site_name, point_name)
    where coalesce(asked.asked_start, site_days.asked_start, site_days.first_at) is not null
),

intervals as (
    select
        * exclude (half_open),
        -- the samples of one point's grid that fit in the range: [start, end) when asked, else inclusive
        case
            when half_open then ceil(epoch(range_end - range_start) / expected_interval_s)
            else floor(epoch(range_end - range_start) / expected_interval_s) + 1
        end::bigint as expected_samples,
        -- samples missing after the last one, up to the range end
        case
            when half_open then ceil(epoch(range_end - last_sample_at) / expected_interval_s) - 1
            else floor(epoch(range_end - last_sample_at) / expected_interval_s)
        end::bigint as missing_at_end
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
            inner_gaps,
            list_filter(
                [{'gap_start': last_sample_at, 'gap_end': range_end, 'missing_samples': missing_at_end}],
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
    gapped.site_name,
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
    {{ build_started_at() }} as created_at,
    zones.time_zone,
    {{ local_midnight('day', 'zones.time_zone') }} as day_start,
    {{ local_midnight('day + 1', 'zones.time_zone') }} as day_end,
    {{ is_complete('gapped.site_name', local_midnight('day', 'zones.time_zone'), local_midnight('day + 1', 'zones.time_zone')) }} as complete,
    repeated_samples
from gapped
join zones using (site_name)
order by gapped.site_name, point_name, day
