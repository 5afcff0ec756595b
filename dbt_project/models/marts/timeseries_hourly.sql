{{ config(
    incremental_strategy='append',
    full_refresh=false,
    on_schema_change='append_new_columns',
    pre_hook="{{ forget_changed_partitions(time='hour') }}",
    post_hook="{{ promote_complete('bucket.hour', 'bucket.hour + interval 1 hour') }}",
) }}

-- Recomputed by (site, day) partition: an incremental build reads only the files of the partitions that
-- changed since the last build (`lake_changes`, from the Delta log) and replaces those partitions' hours.
-- Never fully refreshed (full_refresh=false): `--full-refresh` recomputes every partition that still has
-- raw files, and the hours of days whose raw samples are gone (retention) stay.
--
-- Time-weighted figures (energy of power points, on-time of binary and multi-state points) hold each
-- sample's value until the next sample of its point, but never across a gap: a step longer than
-- gap_tolerance x the point's interval (points.collect_interval, else its median step that day) holds one
-- interval, and so does the last sample of the UTC day. A sample's hold counts in the hour of the sample, so
-- a day's hours add up to the day. Only those points are weighted: ordering every sample of a backfill into
-- per-day lists ran a year's build (263 M samples) out of its 1.25 GB; plain statistics stream.
-- depends_on: {{ ref('timeseries_raw') }}
-- depends_on: {{ ref('lake_changes') }}

{%- set k = var('gap_tolerance') %}
{%- set scope = 'changed' if is_incremental() else 'all' %}

with kinds as (
    select
        points.site_name,
        points.point_name,
        points.value_kind,
        points.collect_interval,
        power.kw_per_unit
    from {{ ref('points') }} as points
    left join {{ power_units() }} as power on power.spelling = {{ unit_spelling('points.units') }}
),

weighted_points as (
    select * from kinds where kw_per_unit is not null or value_kind <> 'analog'
),

plain_hours as (
    select
        site_name,
        point_name,
        {{ utc_hour('"timestamp"') }} as hour,
        count(*) as sample_count,
        min(value) as value_min,
        max(value) as value_max,
        avg(value) as value_mean,
        arg_min(value, "timestamp") as value_first,
        arg_max(value, "timestamp") as value_last
    from {{ lake_read('timeseries', scope) }} as raw
    group by site_name, point_name, hour
),

point_days as (
    select
        raw.site_name,
        raw.point_name,
        list(raw."timestamp" order by raw."timestamp") as sample_times,
        list(raw.value order by raw."timestamp") as sample_values
    from {{ lake_read('timeseries', scope) }} as raw
    semi join weighted_points using (site_name, point_name)
    group by raw.site_name, raw.point_name, {{ utc_day('raw."timestamp"') }}
),

stepped as (
    select
        point_days.*,
        -- steps[i] is the time from sample i to sample i + 1, in seconds
        list_transform(
            list_slice(sample_times, 2, len(sample_times)),
            lambda later, i: (epoch_us(later) - epoch_us(sample_times[i])) / 1000000
        ) as steps,
        coalesce(
            case when weighted_points.collect_interval > 0 then weighted_points.collect_interval end,
            list_median(steps)
        )::double as interval_s,
        weighted_points.kw_per_unit
    from point_days
    join weighted_points using (site_name, point_name)
),

samples as (
    select
        site_name,
        point_name,
        kw_per_unit,
        unnest(sample_times) as "timestamp",
        unnest(sample_values) as value,
        unnest(list_transform(
            sample_times,
            lambda t, i: case when i < len(sample_times) and steps[i] <= {{ k }} * interval_s then steps[i] else interval_s end
        )) as held_s
    from stepped
),

weighted_hours as (
    select
        site_name,
        point_name,
        {{ utc_hour('"timestamp"') }} as hour,
        coalesce(sum(held_s), 0)::double as covered_s,
        sum(value * kw_per_unit * held_s) / 3600 as energy_kwh,
        coalesce(sum(held_s) filter (where value <> 0), 0)::double as held_on_s
    from samples
    group by site_name, point_name, hour
),

hours as (
    select
        plain_hours.*,
        coalesce(kinds.value_kind, 'analog') as value_kind,
        weighted_hours.covered_s,
        weighted_hours.energy_kwh,
        weighted_hours.held_on_s
    from plain_hours
    left join kinds using (site_name, point_name)
    left join weighted_hours using (site_name, point_name, hour)
)

select
    site_name,
    point_name,
    hour,
    sample_count,
    value_min,
    value_max,
    -- the mean of a binary or multi-state point's states is no reading: its on-time is (on_seconds)
    case when value_kind = 'analog' then value_mean end as value_avg,
    value_first,
    value_last,
    value_kind,
    covered_s,
    energy_kwh,
    case when value_kind <> 'analog' then held_on_s end as on_seconds,
    case when value_kind <> 'analog' then held_on_s / nullif(covered_s, 0) end as on_ratio,
    {{ is_complete('hours.site_name', 'hours.hour', "hours.hour + interval 1 hour") }} as complete,
    {{ build_started_at() }} as created_at
from hours
-- time before point: a backfill's row groups then hold consecutive hours, so the statements scoped to the
-- changed days (the pre-hook's delete, daily's read, the tests) skip the row groups of the other days
order by site_name, hour, point_name
