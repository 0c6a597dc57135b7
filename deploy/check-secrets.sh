#!/usr/bin/env bash
# Run first by airflow-init: the stack does not start with a secret still at its .env.example
# placeholder, or without a Fernet key. ALLOW_PLACEHOLDER_VALUES=true lets a throwaway local
# try start anyway, with the same list printed as warnings.
set -uo pipefail

problems=()
for name in AIRFLOW__API_AUTH__JWT_SECRET AIRFLOW__API__SECRET_KEY _AIRFLOW_WWW_USER_PASSWORD \
    POSTGRES_PASSWORD CLICKHOUSE_PASSWORD MINIO_ROOT_PASSWORD \
    SUPERSET_SECRET_KEY SUPERSET_DB_PASSWORD SUPERSET_ADMIN_PASSWORD CLICKHOUSE_DASHBOARDS_PASSWORD; do
  value="${!name-}"
  if [[ -z "$value" ]]; then
    problems+=("$name is empty")
  elif [[ "$value" == *change-me* ]]; then
    problems+=("$name still holds the placeholder from .env.example")
  fi
done
if [[ -z "${AIRFLOW__CORE__FERNET_KEY-}" ]]; then
  problems+=("AIRFLOW__CORE__FERNET_KEY (AIRFLOW_FERNET_KEY in .env) is empty: connections and variables stored in the metadata database would not be encrypted")
fi

if (( ${#problems[@]} == 0 )); then
  echo "Secrets: none at its placeholder, and a Fernet key is set."
  exit 0
fi
if [[ "${ALLOW_PLACEHOLDER_VALUES:-false}" == "true" ]]; then
  for problem in "${problems[@]}"; do echo "WARNING: $problem" >&2; done
  echo "WARNING: ALLOW_PLACEHOLDER_VALUES=true: starting anyway. Never do this on a host others can reach." >&2
  exit 0
fi
for problem in "${problems[@]}"; do echo "ERROR: $problem" >&2; done
echo "Refusing to start: set real values in .env (see .env.example), or ALLOW_PLACEHOLDER_VALUES=true for a throwaway local try." >&2
exit 1
