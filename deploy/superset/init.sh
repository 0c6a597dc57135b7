#!/usr/bin/env bash
# superset-init of the compose stack: the metadata database, the read-only ClickHouse user,
# Superset's schema and roles, the admin on first start, then the dashboards bundle. Every
# step is idempotent: it runs on every `docker compose up`.
set -euo pipefail
python /app/clickstream/bootstrap.py
superset db upgrade
superset fab create-admin --username "${SUPERSET_ADMIN_USERNAME}" --firstname Clickstream --lastname Admin \
  --email admin@localhost --password "${SUPERSET_ADMIN_PASSWORD}" \
  || echo "superset-init: admin ${SUPERSET_ADMIN_USERNAME} exists; its password is the one set in Superset"
superset init
python /app/clickstream/import_dashboards.py --bundle /app/clickstream/dashboards/purchases \
  --username "${SUPERSET_ADMIN_USERNAME}"
