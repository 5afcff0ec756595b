{% test gaps_within(model, max_missing_samples, lookback_days) %}
{#- One row per point that has a gap missing more than max_missing_samples samples within lookback_days
    of the newest day in the model; warn_if / error_if count these points. -#}
select
    site_name,
    point_name,
    count(*) as gaps,
    max(missing_samples) as largest_gap_samples,
    min(gap_start) as first_gap_start,
    max(gap_end) as last_gap_end
from {{ model }}
where missing_samples > {{ max_missing_samples }}
  and day > (select max(day) from {{ model }}) - {{ lookback_days }}
group by site_name, point_name
{% endtest %}
