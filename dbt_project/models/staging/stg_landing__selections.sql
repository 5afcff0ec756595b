{{ landing_read(source('landing', 'selections'), {
    'site_name': 'varchar',
    'point_name': 'varchar',
    'window_start': 'timestamptz',
    'window_end': 'timestamptz',
}) }}
