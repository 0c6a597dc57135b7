"""Assets: the contract between the bundle's DAGs, declared once."""

from airflow.sdk import Asset

# Emitted whenever an ingest task has committed windows: a live window, or a catch-up batch.
# The extra says which windows; consumers work from the ingest log, not from the events.
RAW_WINDOWS = Asset("clickstream/raw")

# Emitted when the purchase marts reflect every committed load.
PURCHASE_MARTS = Asset("clickstream/marts")

# Emitted by a catch-up batch that left history unresolved: it schedules the next batch at
# once, so the catch-up runs batch after batch, yielding the warehouse pool in between.
CATCHUP_BACKLOG = Asset("clickstream/catchup-backlog")
