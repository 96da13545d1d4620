"""What the collector keeps in InfluxDB: measurements, retention and downsampling.

``catalogue`` lists every measurement the system writes (from the firmware
profiles and the code that writes the rest); ``retention`` plans the retention
policies and continuous queries (sans-IO); ``setup`` applies the plan to a
database (``edge-collector influx-setup``); ``docgen`` writes docs/schema.md.
"""
