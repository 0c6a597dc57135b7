"""Clickstream bundle: hourly loads from S3 into ClickHouse, purchase marts and alerts."""
