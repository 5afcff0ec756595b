{{ landing_read(source('landing', 'sites'), {
    'site_name': 'varchar',
    'site_id': 'bigint',
    'nice_name': 'varchar',
    'address': 'varchar',
    'latitude': 'double',
    'longitude': 'double',
    'archived': 'boolean',
    'time_zone': 'varchar',
    'time_zone_source': 'varchar',
    'api_item': 'varchar',
    'collected_at': 'timestamptz',
}) }}
