{{ config(materialized='table') }}

-- Sites whose time zone differs from the one the last complete build computed their local days with
-- (`internal.site_zones_built`, recorded with the Delta snapshot at the end of a build): an override
-- edited, coordinates that arrived, a site seen for the first time, or a warehouse built before local
-- days (every day was a UTC day). Their local-day rows are all recomputed; unrecorded counts as UTC.

{%- set built = adapter.get_relation(database=this.database, schema='internal', identifier='site_zones_built') %}

select sites.site_name, sites.time_zone
from {{ ref('sites') }} as sites
{%- if built is not none %}
left join {{ built }} as built using (site_name)
where sites.time_zone is distinct from coalesce(built.time_zone, 'UTC')
{%- else %}
where sites.time_zone <> 'UTC'
{%- endif %}
order by site_name
