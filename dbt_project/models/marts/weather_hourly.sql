{{ config(
    incremental_strategy='append',
    full_refresh=false,
    pre_hook="{{ forget_changed_partitions(time='hour', dataset='weather') }}",
) }}

-- The weather per site and UTC hour, recomputed by changed (site, day) partition of the weather table like
-- timeseries_hourly. History exists only where it was landed hour by hour (the hourly weather deployment,
-- or an API serving a series): the real API returns current conditions.
-- Units: the temperature's from what the API said (real shape: metadata.temp.units), else the
-- `weather_temperature_units` var; the other measures as the API sent them.
-- depends_on: {{ ref('weather_raw') }}
-- depends_on: {{ ref('lake_changes') }}

with readings as (
    select
        site_name,
        "timestamp",
        temperature,
        humidity,
        precipitation,
        wind_speed,
        coalesce(
            metadata->>'$.temp.units', metadata->>'$.temperature.units', metadata->>'$.temperature_units',
            metadata->>'$.units.temperature'
        ) as said_units
    from ({{ raw_rows('weather', 'changed' if is_incremental() else 'all') }})
),

hours as (
    select
        site_name,
        date_trunc('hour', "timestamp") as hour,
        count(*) as reading_count,
        avg(temperature) as temperature_avg,
        min(temperature) as temperature_min,
        max(temperature) as temperature_max,
        avg(humidity) as humidity_avg,
        avg(precipitation) as precipitation_avg,
        avg(wind_speed) as wind_speed_avg,
        arg_max(said_units, "timestamp") as said_units
    from readings
    group by site_name, hour
)

select
    site_name,
    hour,
    reading_count,
    temperature_avg,
    temperature_min,
    temperature_max,
    case
        when {{ unit_spelling('said_units') }} in ('degc', 'c', 'celsius', 'degreescelsius', 'metric') then 'degC'
        when {{ unit_spelling('said_units') }} in ('degf', 'f', 'fahrenheit', 'degreesfahrenheit', 'imperial') then 'degF'
        when said_units is null then '{{ var("weather_temperature_units") }}'
    end as temperature_units,
    humidity_avg,
    precipitation_avg,
    wind_speed_avg,
    {{ build_started_at() }} as created_at
from hours
order by site_name, hour
