{{ landing_read(source('landing', 'gap_checks'), {
    'site_name': 'varchar',
    'point_name': 'varchar',
    'gap_start': 'timestamptz',
    'gap_end': 'timestamptz',
    'checked_at': 'timestamptz',
    'samples_found': 'bigint',
}) }}
