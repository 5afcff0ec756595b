{{ config(materialized='view') }}

-- Heating and cooling degree days per site-local day (sites.time_zone), from the mean of the day's hourly
-- temperatures (weather_hourly): base 65 degF, or 18 degC when the weather is in Celsius. A view: a few
-- rows per site and day, and a site's zone change shows at once.

with hours as (
    select
        weather.*,
        zones.time_zone,
        {{ local_day('weather.hour', 'zones.time_zone') }} as day
    from {{ ref('weather_hourly') }} as weather
    join (
        select site_name, coalesce(time_zone, 'UTC') as time_zone from {{ ref('sites') }}
    ) as zones using (site_name)
    where weather.temperature_avg is not null
),

days as (
    select
        site_name,
        day,
        any_value(time_zone) as time_zone,
        arg_max(temperature_units, hour) as temperature_units,
        avg(temperature_avg) as temperature_mean,
        count(*) as hours_with_weather
    from hours
    group by site_name, day
)

select
    site_name,
    day,
    time_zone,
    temperature_units,
    temperature_mean,
    base_temperature,
    greatest(base_temperature - temperature_mean, 0) as heating_degree_days,
    greatest(temperature_mean - base_temperature, 0) as cooling_degree_days,
    hours_with_weather,
    day_hours,
    hours_with_weather = day_hours as complete
from (
    select
        *,
        case temperature_units when 'degC' then 18.0 when 'degF' then 65.0 end::double as base_temperature,
        epoch(
            {{ local_midnight('day + 1', 'time_zone') }} - {{ local_midnight('day', 'time_zone') }}
        )::bigint // 3600 as day_hours
    from days
)
order by site_name, day
