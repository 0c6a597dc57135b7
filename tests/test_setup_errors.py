"""Configuration mistakes fail at once, without retries, naming what to fix: a connection
that does not exist, a bucket that does not exist. On the real local S3 server."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from clickstream.source import SourceBucket, SourceSetupError
from clickstream.warehouse import ClickHouseHook, WarehouseConnectionUndefined


def test_an_undefined_bucket_connection_is_named(bucket):
    with pytest.raises(
        SourceSetupError, match=r"connection 'clickstream_prod' of the bucket \(source.conn_id\)"
    ):
        SourceBucket("clickstream_prod", bucket).keys_under("year=2024/")


def test_a_bucket_that_does_not_exist_is_named(s3_connection):
    with pytest.raises(
        SourceSetupError, match=r"bucket 'no-such-bucket-here' \(source.bucket\) does not exist"
    ):
        SourceBucket(s3_connection, "no-such-bucket-here").keys_under("year=2024/")


def test_an_undefined_warehouse_connection_is_named_and_not_retried():
    with pytest.raises(WarehouseConnectionUndefined, match=r"'clickhouse_prod' of the warehouse") as raised:
        ClickHouseHook("clickhouse_prod").get_conn()
    assert isinstance(raised.value, AirflowFailException), "a retry cannot define a connection"


def test_source_setup_errors_are_not_retried():
    assert issubclass(SourceSetupError, AirflowFailException)
