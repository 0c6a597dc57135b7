"""Superset's configuration for the clickstream dashboards: the compose service and the local
stack (`make dashboards`) both load it through SUPERSET_CONFIG_PATH.

Everything secret or machine-specific comes from the environment, never from this file:

- SUPERSET_SECRET_KEY     signs sessions and encrypts the stored database URI; required
- SUPERSET_METADATA_URI   Superset's own metadata database (compose: a database of its own
                          in the stack's Postgres; local: SQLite under .local/dashboards)
"""

import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = os.environ["SUPERSET_METADATA_URI"]

# Analysts read the marts; nobody writes through Superset.
PREVENT_UNSAFE_DB_CONNECTIONS = True
SQLLAB_CTAS_NO_LIMIT = False
# The marts are small per hour and change at most hourly: a cached chart is at most this old.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
DATA_CACHE_CONFIG = CACHE_CONFIG
# Hours in the marts are UTC; show them as such.
DEFAULT_TIME_FILTER = "Last week"
