{{ landing_read(source('landing', 'weather'), {
    'site_name': 'varchar',
    'timestamp': 'timestamptz',
    'temperature': 'double',
    'humidity': 'double',
    'precipitation': 'double',
    'wind_speed': 'double',
    'conditions': 'varchar',
    'metadata': 'varchar',
    'collected_at': 'timestamptz',
}) }}
