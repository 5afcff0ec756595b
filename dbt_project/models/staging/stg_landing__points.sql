{{ landing_read(source('landing', 'points'), {
    'site_name': 'varchar',
    'point_name': 'varchar',
    'collect_enabled': 'boolean',
    'collect_interval': 'bigint',
    'collected_at': 'timestamptz',
}) }}
