{{ landing_read(source('landing', 'rejects'), {
    'site_name': 'varchar',
    'point_name': 'varchar',
    'timestamp_raw': 'varchar',
    'value_raw': 'varchar',
    'reason': 'varchar',
    'collected_at': 'timestamptz',
}) }}
