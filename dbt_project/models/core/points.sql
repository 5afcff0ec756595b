{{ config(materialized='table') }}
-- depends_on: {{ ref('lake_changes') }}

-- One row per site and point: the configured points as last fetched (a point dropped from the configuration
-- keeps its last row), and every point that has samples without ever being listed by the API (metadata
-- null), so a join on (site_name, point_name) never drops a sample.
--
-- The points with samples come from the last build's table plus the partitions that changed since (a build
-- reads the new data, not the whole lake); a first build, a --full-refresh, or a table built before these
-- columns existed reads them from every sample.

{%- set previous = none if flags.FULL_REFRESH else adapter.get_relation(this.database, this.schema, this.identifier) %}
{%- set carried = previous is not none and 'value_kind' in (adapter.get_columns_in_relation(previous) | map(attribute='name') | list) %}

with landed as (
    select * from {{ ref('stg_landing__points') }}
    qualify row_number() over (
        partition by site_name, point_name order by collected_at desc, landing_file desc
    ) = 1
),

sampled as (
{%- if carried %}
    select site_name, point_name from {{ previous }}
    union
    select distinct site_name, point_name from {{ lake_read('timeseries', 'changed') }}
{%- else %}
    select distinct site_name, point_name from {{ ref('timeseries_raw') }}
{%- endif %}
),

points as (
    select
        site_name,
        point_name,
        landed.point_id,
        landed.point_type,
        landed.units,
        coalesce(try_cast(landed.marker_tags::json as varchar[]), []::varchar[]) as marker_tags,
        try_cast(landed.kv_tags as json) as kv_tags,
        landed.collect_enabled,
        landed.collect_interval,
        landed.device_name,
        landed.device_id,
        landed.device_address,
        landed.object_type,
        landed.object_index,
        landed.object_name,
        landed.created,
        landed.updated,
        landed.collected_at,
        try_cast(landed.api_item as json) as api_item,
        -- Kinds compared without case or separators: binary-input, binaryInput and BINARY_INPUT are one.
        regexp_replace(lower(coalesce(landed.object_type, '')), '[^a-z]', '', 'g') as object_kind,
        regexp_replace(lower(coalesce(landed.point_type, '')), '[^a-z]', '', 'g') as point_kind
    from landed
    full join sampled using (site_name, point_name)
),

tagged as (
    select
        *,
        list_transform(marker_tags, lambda tag: regexp_replace(lower(tag), '[^a-z]', '', 'g')) as tag_kinds
    from points
)

select
    site_name,
    point_name,
    point_id,
    point_type,
    units,
    marker_tags,
    kv_tags,
    collect_enabled,
    collect_interval,
    device_name,
    device_id,
    device_address,
    object_type,
    object_index,
    object_name,
    created,
    updated,
    collected_at,
    -- The BACnet object type says it best, then the API's point type, then the tags.
    case
        when object_kind like 'multistate%' then 'multistate'
        when object_kind like 'binary%' then 'binary'
        when point_kind in ('multistate', 'enum') then 'multistate'
        when point_kind in ('binary', 'bool', 'boolean') then 'binary'
        when list_has_any(tag_kinds, ['multistate', 'enum']) then 'multistate'
        when list_has_any(tag_kinds, ['binary', 'bool', 'boolean']) then 'binary'
        else 'analog'
    end as value_kind,
    api_item
from tagged
order by site_name, point_name
