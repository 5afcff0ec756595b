{% macro local_day(instant, time_zone) -%}
{#- The site-local calendar day of an instant (timestamptz) in an IANA zone. -#}
cast(timezone({{ time_zone }}, {{ instant }}) as date)
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
    the few incomplete rows (range edges, live days) are looked at; committed windows never reopen. -#}
update {{ this }} as bucket set complete = true
where not bucket.complete and {{ is_complete('bucket.site_name', period_start, period_end) }}
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
