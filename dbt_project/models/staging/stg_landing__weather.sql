-- depends_on: {{ ref('lake_snapshot') }}
{{ landing_read(lake_files('weather'), {
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
