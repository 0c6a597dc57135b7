"""Assets: the contract between the bundle's DAGs, declared once."""

from airflow.sdk import Asset

# Emitted once per window when every source table of the window is committed.
RAW_WINDOWS = Asset("clickstream/raw")

# Emitted when the purchase marts reflect every committed load.
PURCHASE_MARTS = Asset("clickstream/marts")
