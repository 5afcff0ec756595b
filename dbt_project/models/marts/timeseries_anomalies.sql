{{ config(
    incremental_strategy='append',
    full_refresh=false,
    post_hook="{{ forget_stale_anomalies() }}",
) }}
-- depends_on: {{ ref('lake_changes') }}
-- after point-days, never beside it (int_timeseries__point_days.sql says why)
-- depends_on: {{ ref('int_timeseries__point_days') }}

-- Sustained departures of a point from its own usual values, without limits. Baseline of an hour: the
-- median of the point's hourly means (timeseries_hourly) at the same hour of the week over the previous
-- anomaly_weeks weeks (at least anomaly_min_weeks of them), and their median absolute deviation (MAD). The
-- scale is 1.4826 x the largest of that MAD, the median of the point's MADs over the last 7 days (so that an
-- hour whose few past values happen to agree closely does not make noise look like a departure) and a
-- millionth of the baseline's size (a point that never varies is compared, not divided by zero). An hour is
-- out when |mean - baseline| > anomaly_threshold x scale; anomaly_min_hours consecutive hours out on the
-- same side make an anomaly.
--
-- Incremental: per site, the hours from the day before its first changed day to the last day whose
-- baseline reads a changed day (`anomaly_scope`), widened to the stored anomalies touching them, are
-- recomputed; the post-hook drops the stored rows they replace. Never fully refreshed (full_refresh=false),
-- as timeseries_hourly.

{%- set weeks = var('anomaly_weeks') %}

with
{%- if is_incremental() %}
{{ anomaly_scope() }},
{%- endif %}

hourly as (
    select hourly.site_name, hourly.point_name, hourly.hour, hourly.value_avg as value
    from {{ ref('timeseries_hourly') }} as hourly
    -- the mean of an on/off or multi-state point is no reading to compare
    semi join {{ ref('points') }} as points
        on points.site_name = hourly.site_name and points.point_name = hourly.point_name
        and points.value_kind = 'analog'
{%- if is_incremental() %}
    join extended using (site_name)
    where hourly.hour >= extended.read_start - interval {{ 7 * (weeks + 1) }} day
      and hourly.hour < extended.read_end
      and {{ anomaly_read_span('hourly.hour') }}
{%- endif %}
),

-- The same hour of the previous weeks, at most `weeks` of them. A full build reads them from a window: the
-- point's earlier hours of the same hour of the week are its last `weeks` rows in that order, and those
-- within `weeks` weeks are kept (a self join on hour - n weeks grouped back by hour held a year's backfill's
-- hours four times over). An incremental build baselines only the hours it scores (from read_start) and the
-- week before them, which their scale's median of MADs reads, and looks up their past values by a join:
-- the window sorted every hour read, the weeks of past values too (a day's build at a year of history:
-- 0.36 s more than at day 1 with the window, 0.1 s with the join).
past as (
{%- if is_incremental() %}
    select
        targets.site_name,
        targets.point_name,
        targets.hour,
        any_value(targets.value) as value,
        coalesce(list(earlier.value) filter (where earlier.value is not null), []) as past_values
    from hourly as targets
    join extended
        on extended.site_name = targets.site_name and targets.hour >= extended.read_start - interval 7 day
    cross join range(1, {{ weeks + 1 }}) as back(weeks)
    left join hourly as earlier
        on earlier.site_name = targets.site_name and earlier.point_name = targets.point_name
        and epoch_us(earlier.hour) = epoch_us(targets.hour) - back.weeks * {{ 7 * 86400 * 1000000 }}
    group by targets.site_name, targets.point_name, targets.hour
{%- else %}
    select
        site_name,
        point_name,
        hour,
        value,
        list_filter(
            [
                {%- for back in range(1, weeks + 1) %}
                case
                    when epoch_us(hour) - epoch_us(lag(hour, {{ back }}) over same_hour) <= {{ weeks * 7 * 86400 * 1000000 }}
                        then lag(value, {{ back }}) over same_hour
                end{{ ',' if not loop.last }}
                {%- endfor %}
            ],
            lambda earlier: earlier is not null
        ) as past_values
    from hourly
    -- hours are whole UTC hours: one of the week's 168, also before 1970
    window same_hour as (
        partition by site_name, point_name, (epoch_us(hour) // 3600000000 % 168 + 168) % 168 order by hour
    )
{%- endif %}
),

baselined as (
    select
        *,
        list_aggregate(past_values, 'median') as baseline,
        list_aggregate(list_transform(past_values, lambda x: abs(x - baseline)), 'median') as mad
    from past
    where len(past_values) >= {{ var('anomaly_min_weeks') }}
),

scored as (
    select
        *,
        1.4826 * greatest(
            mad,
            median(mad) over (
                partition by site_name, point_name order by hour
                range between interval 7 day preceding and current row
            ),
            1e-6 * (abs(baseline) + 1)
        ) as scale,
        abs(value - baseline) / scale as score,
        case when value > baseline then 'above' else 'below' end as direction
    from baselined
),

marked as (
    select
        *,
        score > {{ var('anomaly_threshold') }} as flagged,
        flagged and (
            lag(flagged) over by_hour is distinct from true
            or lag(direction) over by_hour is distinct from direction
            or hour - lag(hour) over by_hour <> interval 1 hour
        ) as run_starts
    from scored
{%- if is_incremental() %}
    where hour >= (select read_start from extended where extended.site_name = scored.site_name)
{%- endif %}
    window by_hour as (partition by site_name, point_name order by hour)
),

numbered as (
    select *, sum(run_starts::integer) over (partition by site_name, point_name order by hour) as run
    from marked
),

anomalies as (
    select
        site_name,
        point_name,
        min(hour) as anomaly_start,
        max(hour) + interval 1 hour as anomaly_end,
        count(*) as hours,
        any_value(direction) as direction,
        max(score) as score,
        arg_max(value, score) as peak_value,
        arg_max(hour, score) as peak_at,
        arg_max(baseline, score) as baseline
    from numbered
    where flagged
    group by site_name, point_name, run
    having count(*) >= {{ var('anomaly_min_hours') }}
)

select
    {{ stable_id(['site_name', 'point_name', 'epoch_us(anomaly_start)']) }} as id,
    *,
    {{ build_started_at() }} as created_at
from anomalies
{%- if is_incremental() %}
where exists (
    select 1 from changed
    where changed.site_name = anomalies.site_name
      and anomalies.anomaly_start <= changed.range_end and anomalies.anomaly_end >= changed.range_start
)
{%- endif %}
order by site_name, point_name, anomaly_start
