{% macro local_day(instant, time_zone, offsets=none) -%}
{#- The site-local calendar day of an instant (timestamptz) in an IANA zone. With `offsets` (zone_offsets),
    an instant inside one of its zone's periods takes the day by integer arithmetic on its microseconds and
    the period's UTC offset, any other through ICU: ICU's conversion is the dearest step per sample, and a
    year's backfill (263 M samples) made it twice per sample. -#}
{%- set by_icu = 'cast(timezone(' ~ time_zone ~ ', ' ~ instant ~ ') as date)' -%}
{%- if offsets -%}
case {{ time_zone }}
    {%- for zone, periods in offsets.items() %}
    when {{ sql_text(zone) }} then case
        {%- for first_us, last_us, offset_us in periods %}
        when epoch_us({{ instant }}) between {{ first_us }} and {{ last_us }} then make_timestamp(epoch_us({{ instant }}) + {{ offset_us }})::date
        {%- endfor %}
        else {{ by_icu }}
    end
    {%- endfor %}
    else {{ by_icu }}
end
{%- else -%}
{{ by_icu }}
{%- endif -%}
{%- endmacro %}


{% macro zone_offsets(span_query) -%}
{#- At compile time, the UTC offset periods of every site's zone (`sites`) over the instants of the one row
    (start, end) that `span_query` returns, widened to whole UTC days (the partitions a model reads): zone ->
    [(first_us, last_us, offset_us)], epoch microseconds, the offset holding from first to last inclusive.
    Sampled with DuckDB's own ICU every 15 minutes: no zone changes its offset twice in 15 minutes, so an
    offset found at two consecutive samples holds between them, and the 15 minutes around each change
    belong to no period (local_day asks ICU there). Empty while dbt only parses, before `sites` exists (a
    unit test's fixtures are no tables), or for an empty span. -#}
{%- set offsets = {} -%}
{%- set sites = adapter.get_relation(database=target.database, schema=target.schema, identifier='sites') -%}
{%- if execute and sites is not none -%}
{%- set query -%}
with span as (
    select
        {{ utc_day('span_start') }}::timestamp as first_at,
        ({{ utc_day('span_end - interval 1 microsecond') }} + 1)::timestamp as end_at
    from ({{ span_query }}) as span(span_start, span_end)
    where span_start < span_end
),

samples as (
    select
        zones.zone,
        epoch_us(sampled_at) as at_us,
        epoch_us(timezone(zones.zone, timezone('UTC', sampled_at))) - epoch_us(sampled_at) as offset_us
    from span,
        (select distinct coalesce(time_zone, 'UTC') as zone from {{ sites }}) as zones,
        unnest(generate_series(first_at, end_at, interval 15 minute)) as grid(sampled_at)
),

periods as (
    select *, sum(changes::integer) over (partition by zone order by at_us) as period
    from (
        select *, offset_us is distinct from lag(offset_us) over (partition by zone order by at_us) as changes
        from samples
    )
)

select zone, min(at_us)::varchar, max(at_us)::varchar, any_value(offset_us)::varchar
from periods
group by zone, period
order by zone, min(at_us)
{%- endset -%}
{%- for zone, first_us, last_us, offset_us in run_query(query).rows -%}
{%- do offsets.setdefault(zone, []).append((first_us, last_us, offset_us)) -%}
{%- endfor -%}
{%- endif -%}
{%- do return(offsets) -%}
{%- endmacro %}


{% macro local_midnight(day, time_zone) -%}
{#- The instant a site-local day starts (its local midnight) as timestamptz; the next day's is its end, so
    a day lasts 23 or 25 hours when the clocks change. -#}
timezone({{ time_zone }}, cast({{ day }} as timestamp))
{%- endmacro %}


{% macro site_zones() -%}
{#- Every site's IANA zone from `sites` (a site it does not know is UTC). -#}
(select site_name, time_zone from {{ ref('sites') }})
{%- endmacro %}


{% macro is_complete(site_name, period_start, period_end) -%}
{#- Whether [period_start, period_end) lies wholly inside the site's committed windows (runs that completed,
    merged into ranges by int_complete_windows). -#}
exists (
    select 1 from {{ ref('int_complete_windows') }} as committed
    where committed.site_name = {{ site_name }}
      and committed.range_start <= {{ period_start }} and committed.range_end >= {{ period_end }}
)
{%- endmacro %}


{% macro promote_complete(period_start, period_end) -%}
{#- Post-hook: rows not complete when computed become complete once a later run commits the windows they
    lie in (a window that completes without changing a partition's files changes no row otherwise). Only
    windows committed since the last complete build can complete a row the build did not recompute, so only
    incomplete rows overlapping one of them are looked at, and none when there is none: checking every
    incomplete row (the open day, range edges, and all rows of a landing no run committed) made each build
    cost what the history costs. Committed windows never reopen. -#}
{%- set windows = newly_committed_windows() -%}
{%- if execute and run_query('select 1 from ' ~ windows ~ ' limit 1').rows | length > 0 -%}
update {{ this }} as bucket set complete = true
where not bucket.complete
  and exists (
    select 1 from {{ windows }} as committed
    where committed.site_name = bucket.site_name
      and committed.window_start < {{ period_end }} and committed.window_end > {{ period_start }}
  )
  and {{ is_complete('bucket.site_name', period_start, period_end) }}
{%- else -%}
select 1
{%- endif -%}
{%- endmacro %}


{% macro newly_committed_windows() -%}
{#- As a subquery: the windows of runs that completed which lie outside the committed ranges the last
    complete build recorded (`internal.complete_windows_built`, written with the Delta snapshot at its end);
    every committed window before any record. -#}
{%- set built = adapter.get_relation(database=target.database, schema='internal', identifier='complete_windows_built') -%}
(select distinct site_name, window_start, window_end
from {{ ref('etl_runs') }} as runs
where status = 'complete' and window_end > window_start
{%- if built is not none %}
  and not exists (
    select 1 from {{ built }} as built
    where built.site_name = runs.site_name
      and built.range_start <= runs.window_start and built.range_end >= runs.window_end
  )
{%- endif %})
{%- endmacro %}


{% macro power_units() -%}
{#- Spellings of power units (lower case, only letters, digits and `/` kept) and their kW per unit: what
    energy_kwh integrates. Units not listed here are not power, so their points get no energy. -#}
(select * from (values
    ('w', 0.001), ('watt', 0.001), ('watts', 0.001),
    ('kw', 1.0), ('kilowatt', 1.0), ('kilowatts', 1.0),
    ('mw', 1000.0), ('megawatt', 1000.0), ('megawatts', 1000.0),
    ('btu/h', 0.00029307107), ('btu/hr', 0.00029307107), ('btuh', 0.00029307107),
    ('btuhr', 0.00029307107), ('btu/hour', 0.00029307107), ('btusperhour', 0.00029307107),
    ('btuperhour', 0.00029307107),
    ('kbtu/h', 0.29307107), ('kbtu/hr', 0.29307107), ('kbtuh', 0.29307107), ('mbh', 0.29307107),
    ('kilobtusperhour', 0.29307107),
    ('ton', 3.5168528), ('tons', 3.5168528), ('tonsrefrigeration', 3.5168528),
    ('tonrefrigeration', 3.5168528), ('tonsofrefrigeration', 3.5168528), ('tr', 3.5168528),
    ('hp', 0.745699872), ('horsepower', 0.745699872)
) as units(spelling, kw_per_unit))
{%- endmacro %}


{% macro unit_spelling(units) -%}
regexp_replace(lower({{ units }}), '[^a-z0-9/]', '', 'g')
{%- endmacro %}


{% macro local_days_span(column) -%}
{#- Whether the timestamptz `column` lies within the span of the local days this build recomputes
    (int_local_days), written as constants; false when there is none. -#}
{{ constant_span(column, "select min(day_start), max(day_end) from " ~ lake_relation('int_local_days')) }}
{%- endmacro %}


{% macro constant_span(column, query) -%}
{#- Whether the timestamptz `column` lies in [start, end) of the one row `query` returns, written as
    constants: DuckDB skips row groups by constant bounds, never by bounds from a join or a subquery. False
    when the query finds no span (null start); true while dbt only parses. -#}
{%- set span = none -%}
{%- if execute -%}
{%- set span = run_query("select strftime(s, '%Y-%m-%d %H:%M:%S+00'), strftime(e, '%Y-%m-%d %H:%M:%S+00') from (" ~ query ~ ") as span(s, e)").rows[0] -%}
{%- endif -%}
{%- if span is none -%}
true
{%- elif span[0] is none -%}
false
{%- else -%}
({{ column }} >= timestamptz '{{ span[0] }}' and {{ column }} < timestamptz '{{ span[1] }}')
{%- endif -%}
{%- endmacro %}
