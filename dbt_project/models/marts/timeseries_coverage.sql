{{ config(materialized='view') }}

select
    site_name,
    point_name,
    day,
    expected_interval_s,
    expected_samples,
    received_samples,
    coverage_ratio,
    complete
from {{ ref('int_timeseries__point_days') }}
