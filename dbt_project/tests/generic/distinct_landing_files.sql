{% test distinct_landing_files(model, datasets) %}
{#- A landing file copied under another name (by hand, or restored from a backup beside the original)
    holds samples already landed. The warehouse keeps one row per key anyway; the copy is reported, one
    row per set of identical files. In these datasets every file holds fetched rows with their fetch time,
    so identical bytes mean a copy. Only files of equal size are hashed: the rest are never opened. -#}
with listed as (
    select filename, size
    from {{ landing_location(model) }}
    where {{ is_landed_file('filename') }}
      and dataset in ('{{ datasets | join("', '") }}')
),

same_size as (
    select filename from listed qualify count(*) over (partition by size) > 1
),

hashed as (
    select filename, md5(content) as digest
    from {{ landing_location(model) }}
    where filename in (select filename from same_size)
)

select digest, count(*) as copies, list(filename order by filename) as files
from hashed
group by digest
having count(*) > 1
{% endtest %}
