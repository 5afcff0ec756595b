-- depends_on: {{ ref('lake_snapshot') }}
{{ landing_read(lake_files('timeseries'), {
    'site_name': 'varchar',
    'point_name': 'varchar',
    'timestamp': 'timestamptz',
    'value': 'double',
    'quality': 'varchar',
    'metadata': 'varchar',
    'collected_at': 'timestamptz',
}) }}
