{{ config(
    incremental_strategy='append',
    full_refresh=false,
    post_hook=["{{ forget_stale_excursions() }}", "{{ record_point_limits() }}"],
) }}
-- depends_on: {{ ref('lake_changes') }}
-- depends_on: {{ ref('lake_snapshot') }}

-- An excursion is a run of a point's consecutive samples beyond one of its limits (internal.point_limits:
-- the first matching rule of the user's limits file, then of the bundled defaults) lasting at least the
-- rule's min_duration. A step longer than gap_tolerance x the point's interval (collect_interval, else its
-- median step) ends a run: what happened in a gap is unknown. The run ends at the first sample back within
-- limits (`closed`), else at its last sample (the data stops: it may go on).
--
-- Incremental: only the days around the Delta partitions that changed are read (`excursion_scope`): each
-- changed day and the day either side, plus every day of the stored excursions that touch those days, so a
-- run across midnight or over several days is recomputed whole and stays one row. Runs touching those days
-- are written anew; the post-hook then drops the stored rows they replace. A point whose limits changed is
-- recomputed over every day. A rule's min_duration is at most one day, so nothing beyond the day either
-- side can change. Never fully refreshed (full_refresh=false): `--full-refresh` recomputes every day that
-- still has raw files; excursions of days whose raw samples are gone (retention) stay.

{%- set tolerance = var('gap_tolerance') %}
{%- set limits = ref('point_limits') %}

{%- if is_incremental() %}
{%- set read_partitions -%}
with {{ excursion_scope() }},
site_keys as (select distinct site_name, site_key from {{ limits }})
select site_key, day from near_days join site_keys using (site_name)
union
select site_key, unnest(generate_series(
    {{ utc_day('excursion_start') }}, {{ utc_day('excursion_end') }}, interval 1 day
))::date as day
from stale join site_keys using (site_name)
union
select site_key, day from {{ ref('lake_snapshot') }}
where dataset = 'timeseries'
  and site_key in (select site_key from limit_changes join site_keys using (site_name))
{%- endset %}
{%- endif %}

with
{%- if is_incremental() %}
{{ excursion_scope() }},
{%- endif %}

samples as (
    select
        raw.site_name,
        raw.point_name,
        raw."timestamp",
        raw.value,
        limits.rule,
        limits.rule_source,
        limits.units,
        limits.low,
        limits.high,
        limits.min_duration_s,
        case when points.collect_interval > 0 then points.collect_interval end as collect_interval
    from {{ lake_read('timeseries', 'partitions', read_partitions) if is_incremental() else lake_read('timeseries') }} as raw
    join {{ limits }} as limits using (site_name, point_name)
    left join {{ ref('points') }} as points using (site_name, point_name)
),

stepped as (
    select
        *,
        case when value > high then 'high' when value < low then 'low' end as limit_kind,
        epoch("timestamp" - lag("timestamp") over by_time) as step_before,
        epoch(lead("timestamp") over by_time - "timestamp") as step_after,
        lead("timestamp") over by_time as next_at
    from samples
    window by_time as (partition by site_name, point_name order by "timestamp")
),

marked as (
    select
        *,
        coalesce(collect_interval, median(step_before) over (partition by site_name, point_name)) as interval_s,
        limit_kind is not null and (
            lag(limit_kind) over by_time is distinct from limit_kind
            or coalesce(step_before > {{ tolerance }} * interval_s, true)
        ) as run_starts
    from stepped
    window by_time as (partition by site_name, point_name order by "timestamp")
),

numbered as (
    select *, sum(run_starts::integer) over (partition by site_name, point_name order by "timestamp") as run
    from marked
),

runs as (
    select
        site_name,
        point_name,
        limit_kind,
        min("timestamp") as excursion_start,
        max("timestamp") as last_at,
        arg_max_null(next_at, "timestamp") as next_at,
        arg_max_null(step_after, "timestamp") as step_after,
        any_value(interval_s) as interval_s,
        count(*) as samples,
        case any_value(limit_kind) when 'high' then max(value) else min(value) end as peak_value,
        case any_value(limit_kind)
            when 'high' then first("timestamp" order by value desc, "timestamp")
            else first("timestamp" order by value, "timestamp")
        end as peak_at,
        case any_value(limit_kind) when 'high' then any_value(high) else any_value(low) end as limit_value,
        any_value(units) as units,
        any_value(rule) as rule,
        any_value(rule_source) as rule_source,
        any_value(min_duration_s) as min_duration_s
    from numbered
    where limit_kind is not null
    group by site_name, point_name, run, limit_kind
),

ended as (
    select
        *,
        next_at is not null and coalesce(step_after <= {{ tolerance }} * interval_s, true) as closed
    from runs
),

excursions as (
    select
        site_name,
        point_name,
        excursion_start,
        case when closed then next_at else last_at end as excursion_end,
        epoch(excursion_end - excursion_start) as duration_s,
        closed,
        limit_kind,
        limit_value,
        peak_value,
        peak_at,
        units,
        samples,
        rule,
        rule_source,
        min_duration_s
    from ended
)

select
    {{ stable_id(['site_name', 'point_name', 'epoch_us(excursion_start)']) }} as id,
    * exclude (min_duration_s),
    {{ build_started_at() }} as created_at
from excursions as computed
where duration_s >= min_duration_s
{%- if is_incremental() %}
  and (
    exists (
        select 1 from near_days
        where near_days.site_name = computed.site_name
          and computed.excursion_start < near_days.day::timestamptz + interval 1 day
          and computed.excursion_end >= near_days.day::timestamptz
    )
    or exists (
        select 1 from stale
        where stale.site_name = computed.site_name and stale.point_name = computed.point_name
          and computed.excursion_start <= stale.excursion_end
          and computed.excursion_end >= stale.excursion_start
    )
    or (site_name, point_name) in (select site_name, point_name from limit_changes)
  )
{%- endif %}
order by site_name, point_name, excursion_start
