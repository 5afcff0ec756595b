{{ landing_read(source('landing', 'timeseries'), {
    'site_name': 'varchar',
    'point_name': 'varchar',
    'timestamp': 'timestamptz',
    'value': 'double',
    'quality': 'varchar',
    'metadata': 'varchar',
    'collected_at': 'timestamptz',
}) }}
