{{ config(materialized='table') }}
-- depends_on: {{ ref('lake_snapshot') }}

-- One row per site: every site of the sites landing, of the points landing, or with files in the lake
-- (timeseries or weather), so a join on site_name never drops a sample. The time zone is the override
-- given to this build (`time_zones`: the sites file of `ace-etl transform`, or a flow's parameters),
-- else the one landed with the site's record (an override then, or from its coordinates), else UTC.

{%- set overrides = var('time_zones', {}) or {} %}

with landed as (
    select * from {{ ref('stg_landing__sites') }}
    qualify row_number() over (partition by site_name order by collected_at desc, landing_file desc) = 1
),

known as (
    select site_name from landed
    union
    select site_name from {{ ref('stg_landing__points') }}
    union
    select site_name from {{ ref('lake_snapshot') }} where site_name is not null
),

overrides as (
    select * from (
        values (null::varchar, null::varchar)
        {%- for site, zone in overrides.items() %},
        ({{ sql_text(site) }}, {{ sql_text(zone) }})
        {%- endfor %}
    ) as given(site_name, time_zone)
    where site_name is not null
)

select
    site_name,
    landed.site_id,
    landed.nice_name,
    landed.address,
    landed.latitude,
    landed.longitude,
    landed.archived,
    coalesce(overrides.time_zone, landed.time_zone, 'UTC') as time_zone,
    case
        when overrides.time_zone is not null then 'override'
        when landed.time_zone is not null then landed.time_zone_source
        else 'default'
    end as time_zone_source,
    landed.collected_at,
    try_cast(landed.api_item as json) as api_item
from known
left join landed using (site_name)
left join overrides using (site_name)
order by site_name
