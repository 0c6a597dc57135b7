# The clickstream bundle on the official Airflow image.
#
# Follows "Adding packages from requirements.txt" of the Airflow docker-stack docs: the
# airflow user installs the pinned runtime packages, with apache-airflow pinned on the same
# pip command line so that pip can never move Airflow itself. The base tag, the pin below
# and the pin in requirements.txt are the same version (tests/test_deployment.py checks it).
#
# constraints.txt is deliberately NOT passed with -c: it is the resolved set of the
# development venv, which does not hold the providers the image ships with (celery, fab,
# postgres, redis, ...). Forcing it here could move a shared dependency under one of them;
# without it pip keeps the image's own constraint-resolved set and only adds what
# requirements.txt asks for.
#
# The image talks to a ClickHouse server and does not carry the embedded engine (chdb, ~550 MB).
# An operator who wants it in the image (to run the local stack inside it) builds with
#   docker build --build-arg WITH_EMBEDDED_ENGINE=true .
# which installs requirements-embedded.txt (requirements.txt plus chdb) instead.
FROM apache/airflow:3.3.2-python3.11

ARG WITH_EMBEDDED_ENGINE=false

USER airflow

COPY --chown=airflow:0 requirements.txt requirements-embedded.txt /
RUN if [ "$WITH_EMBEDDED_ENGINE" = "true" ]; then requirements=/requirements-embedded.txt; \
    else requirements=/requirements.txt; fi; \
    pip install --no-cache-dir "apache-airflow==3.3.2" -r "$requirements"

# The bundle itself, so that the image runs without the source tree mounted. docker-compose
# mounts the same folders over these paths for development.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 config/ /opt/airflow/config/

# Only what a deployment runs: scripts/ (demo, benchmarks, the synthetic source) and tests/ stay
# out of the image. clickstream.config finds config/ and include/ next to plugins/;
# CLICKSTREAM_CONFIG makes the file explicit, and PYTHONPATH lets a plain `python` outside
# Airflow's own plugin loading (the compose seed, an operator's shell) import the package.
ENV CLICKSTREAM_CONFIG=/opt/airflow/config/clickstream.toml \
    PYTHONPATH=/opt/airflow/plugins
