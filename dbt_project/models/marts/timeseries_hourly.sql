{{ config(
    incremental_strategy='append',
    full_refresh=false,
    pre_hook="{{ forget_changed_partitions(time='hour') }}",
) }}

-- Recomputed by (site, day) partition: an incremental build reads only the files of the partitions that
-- changed since the last build (`lake_changes`, from the Delta log) and replaces those partitions' hours.
-- Never fully refreshed (full_refresh=false): `--full-refresh` recomputes every partition that still has
-- raw files, and the hours of days whose raw samples are gone (retention) stay.
-- depends_on: {{ ref('timeseries_raw') }}
-- depends_on: {{ ref('lake_changes') }}

select
    site_name,
    point_name,
    date_trunc('hour', "timestamp") as hour,
    count(*) as sample_count,
    min(value) as value_min,
    max(value) as value_max,
    avg(value) as value_avg,
    arg_min(value, "timestamp") as value_first,
    arg_max(value, "timestamp") as value_last,
    {{ build_started_at() }} as created_at
from {{ lake_read('timeseries', 'changed' if is_incremental() else 'all') }} as raw
group by site_name, point_name, hour
order by site_name, point_name, hour
