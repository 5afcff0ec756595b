{{ config(materialized='incremental', unique_key='path', incremental_strategy='delete+insert') }}

-- The landing's change log. A file is registered again when its size or modification time changes,
-- which is what a re-run replacing a file under the same name looks like. Models fed from the landing
-- read only files registered after their own last build (macro landed_since_last_build).

with listed as (
    select
        filename as path,
        regexp_extract(filename, '.*/landing/([^/]+)/', 1) as dataset,
        size as size_bytes,
        last_modified as modified_at
    from {{ source('landing', 'files') }}
    where {{ is_landed_file('filename') }}
)

select
    listed.*,
{%- if is_incremental() %}
    -- Never at or before an earlier registration, even if the clock stepped back.
    greatest(
        {{ build_started_at() }},
        (select max(registered_at) from {{ this }}) + interval 1 microsecond
    ) as registered_at
from listed
where not exists (
    select 1 from {{ this }} as known
    where known.path = listed.path
      and known.size_bytes = listed.size_bytes
      and known.modified_at = listed.modified_at
)
{%- else %}
    {{ build_started_at() }} as registered_at
from listed
{%- endif %}
