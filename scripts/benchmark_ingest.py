"""Benchmark the hourly load on the local stack (moto_server + chdb), all numbers in one run.

Measured for one generated hour of 1,000,000 events (four tables, ~1.2 GB of JSON lines):

* this loader, end to end: download, unzip to disk, parse and insert each of the four
  objects, commit (``WindowLoader``, as the ingest DAG runs it), in a fresh process;
* the engine's limit: ``INSERT ... SELECT FROM file(..., JSONEachRow)`` of the same files
  already decompressed on local disk, in a fresh process;
* a seed-style loader, as the old projects did it: the whole object read into memory,
  ``.decode().splitlines()``, ``json.loads`` per line, rows sent back as JSON in batches;
* peak RSS of the loading process for an hour of 100,000 and of 1,000,000 events;
* the server path: the worker's CPU time (user + system of its process) for loading the
  large hour through the server backend, i.e. clickhouse-driver over a socket to a ClickHouse
  server that reads the objects from the bucket itself. The server is the fake of
  ``tests/fake_clickhouse.py`` in its own process (none can run here), so its work is not
  the worker's; printed per 1M rows as ``server_path_worker_cpu_s_per_1m``.

Each measurement runs in its own process so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import local_stack

SMALL_HOUR = datetime(2024, 4, 10, 23, tzinfo=UTC)
LARGE_HOUR = datetime(2024, 4, 11, 0, tzinfo=UTC)
SEED = 20240410
BUCKET = "clickstream-benchmark"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_python_heap_mb() -> float:
    """Peak of the Python heap since tracing started: the loader's own memory, engine excluded."""
    return tracemalloc.get_traced_memory()[1] / 2**20


def _settings(bucket: str):
    from dataclasses import replace

    from clickstream.config import get_settings

    settings = get_settings()
    return replace(settings, source=replace(settings.source, bucket=bucket))


def measure_loader(window: str) -> dict:
    """Load all tables of ``window`` with the product's loader."""
    from clickstream.loading import WindowLoader, ensure_schema, parse_window_start, source_bucket
    from clickstream.warehouse import ClickHouseHook

    settings = _settings(BUCKET)
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        loader = WindowLoader(hook, source_bucket(settings), settings)
        tracemalloc.start()
        started = time.perf_counter()
        rows = sum(loader.load(table, parse_window_start(window)).rows for table in settings.tables)
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": rows,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_heap_mb": _peak_python_heap_mb(),
    }


def measure_engine(files_dir: str) -> dict:
    """Insert the files of ``files_dir`` with the engine alone: the upper bound of any loader.

    Run on the decompressed members it is the limit; run on the members rewrapped as gzip
    (what this loader hands the engine) it shows what inflating costs on top.
    """
    from clickstream.loading import ensure_schema
    from clickstream.warehouse import ClickHouseHook

    settings = _settings(BUCKET)
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        started = time.perf_counter()
        for table in settings.tables:
            hook.run(
                "benchmark_insert_file_limit",
                {
                    "database": settings.warehouse.database,
                    "loads_table": table.loads_table,
                    "path": str(next(Path(files_dir).glob(f"{table.name}.jsonl*"))),
                    "structure": ", ".join(f"{c.name} {c.type}" for c in table.columns),
                },
                local_stack.SCRIPTS_SQL_DIR,
            )
        seconds = time.perf_counter() - started
        rows = sum(
            int(
                hook.run(
                    "select_row_count", {"database": settings.warehouse.database, "table": t.loads_table}
                )[0][0]
            )
            for t in settings.tables
        )
    return {"seconds": seconds, "rows": rows, "peak_rss_mb": _peak_rss_mb()}


def measure_seed_style(window: str) -> dict:
    """Load like the old projects: whole object in memory, json.loads per line, rows re-sent."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    from clickstream.loading import ensure_schema, parse_window_start
    from clickstream.source import object_key
    from clickstream.warehouse import ClickHouseHook

    settings = _settings(BUCKET)
    client = S3Hook(aws_conn_id=settings.source.conn_id).get_conn()
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        started = time.perf_counter()
        rows = 0
        for table in settings.tables:
            key = object_key(settings.source.key_template, parse_window_start(window), table.name)
            body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            text = zipfile.ZipFile(io.BytesIO(body)).read(f"{table.name}.jsonl").decode()
            records = [json.loads(line) for line in text.splitlines()]
            for start in range(0, len(records), 100_000):
                batch = records[start : start + 100_000]
                hook.run(
                    "benchmark_insert_json_rows",
                    {
                        "database": settings.warehouse.database,
                        "loads_table": table.loads_table,
                        "rows": "\n".join(json.dumps(record) for record in batch),
                        "structure": ", ".join(f"{c.name} {c.type}" for c in table.columns),
                    },
                    local_stack.SCRIPTS_SQL_DIR,
                )
            rows += len(records)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "peak_rss_mb": _peak_rss_mb()}


def measure_server_path(window: str) -> dict:
    """Load all tables of ``window`` through the server backend; return the worker's CPU time."""
    from clickstream.loading import WindowLoader, ensure_schema, parse_window_start, source_bucket
    from clickstream.warehouse import ClickHouseHook

    settings = _settings(BUCKET)
    with ClickHouseHook() as hook:
        ensure_schema(hook, settings)
        loader = WindowLoader(hook, source_bucket(settings), settings)
        started, cpu_started = time.perf_counter(), time.process_time()
        rows = sum(loader.load(table, parse_window_start(window)).rows for table in settings.tables)
        cpu = time.process_time() - cpu_started
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "cpu_seconds": cpu, "peak_rss_mb": _peak_rss_mb()}


MEASUREMENTS = {
    "loader": measure_loader,
    "engine": measure_engine,
    "seed": measure_seed_style,
    "server": measure_server_path,
}


def run_child(kind: str, argument: str, chdb_path: Path, connection: str | None = None) -> dict:
    connection = connection or local_stack.chdb_connection_uri(chdb_path)
    env = {**os.environ, "AIRFLOW_CONN_CLICKHOUSE_DEFAULT": connection}
    completed = subprocess.run(
        [sys.executable, __file__, "--child", kind, argument], env=env, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise RuntimeError(f"measurement {kind!r} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def generate(hour: datetime, events: int, workdir: Path, s3_client) -> float:
    from synthetic_clickstream import write_hour_archives

    from clickstream.config import get_settings
    from clickstream.source import object_key

    started = time.perf_counter()
    directory = workdir / hour.strftime("%Y%m%d%H")
    directory.mkdir()
    for table, path in write_hour_archives(hour, events, SEED, directory).items():
        s3_client.upload_file(str(path), BUCKET, object_key(get_settings().source.key_template, hour, table))
    return time.perf_counter() - started


def decompress(hour: datetime, workdir: Path) -> tuple[Path, Path]:
    """Return folders with the hour's members decompressed and rewrapped as gzip."""
    from clickstream.source import unwrap_member

    plain, gzipped = workdir / "decompressed", workdir / "gzipped"
    plain.mkdir()
    gzipped.mkdir()
    for archive_path in (workdir / hour.strftime("%Y%m%d%H")).glob("*.zip"):
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(plain)
            [member] = archive.namelist()
        unwrap_member(archive_path, member, gzipped, BUCKET, archive_path.name)
    return plain, gzipped


@contextmanager
def fake_server(chdb_path: Path) -> Iterator[int]:
    """Run the fake ClickHouse server in its own process; yield its port."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": local_stack.S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": local_stack.S3_SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    process = subprocess.Popen(
        [sys.executable, str(local_stack.FAKE_CLICKHOUSE_SCRIPT), "--chdb-path", str(chdb_path),
         "--password", "server-password"],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield int(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(timeout=30)


def upload_member_sidecars(hour: datetime, gzipped: Path, s3_client) -> None:
    """Put each member beside its archive, where the fake server reads it (it has no minizip)."""
    from fake_clickhouse import member_sidecar_key

    from clickstream.config import get_settings
    from clickstream.source import member_name, object_key

    for table in get_settings().table_names:
        key = object_key(get_settings().source.key_template, hour, table)
        sidecar = member_sidecar_key(key, member_name(table))
        s3_client.upload_file(str(gzipped / f"{member_name(table)}.gz"), BUCKET, sidecar)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=local_stack.HelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events of the large hour")
    parser.add_argument("--small-events", type=int, default=100_000, help="events of the small hour")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ARG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, argument = args.child
        print(json.dumps(MEASUREMENTS[kind](argument)))
        return

    with (
        tempfile.TemporaryDirectory(prefix="clickstream-bench-") as tmp,
        local_stack.moto_server() as endpoint,
    ):
        workdir = Path(tmp)
        os.environ["AIRFLOW_CONN_CLICKSTREAM_S3"] = local_stack.s3_connection_uri(endpoint)
        os.environ.update(local_stack.airflow_environment(workdir / "airflow"))
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        client = S3Hook(aws_conn_id="clickstream_s3").get_conn()
        client.create_bucket(Bucket=BUCKET)
        print(f"Generating {args.small_events:,} and {args.events:,} events ...", flush=True)
        generate(SMALL_HOUR, args.small_events, workdir, client)
        generation = generate(LARGE_HOUR, args.events, workdir, client)
        print(f"  the large hour took {generation:.1f} s to generate and upload", flush=True)
        plain, gzipped = decompress(LARGE_HOUR, workdir)

        small = run_child("loader", SMALL_HOUR.isoformat(), workdir / "chdb-small")
        large = run_child("loader", LARGE_HOUR.isoformat(), workdir / "chdb-large")
        engine = run_child("engine", str(plain), workdir / "chdb-engine")
        engine_gzip = run_child("engine", str(gzipped), workdir / "chdb-engine-gzip")
        seed = run_child("seed", LARGE_HOUR.isoformat(), workdir / "chdb-seed")
        upload_member_sidecars(LARGE_HOUR, gzipped, client)
        with fake_server(workdir / "chdb-server") as port:
            server = run_child(
                "server", LARGE_HOUR.isoformat(), workdir, local_stack.server_connection_uri(port)
            )

    rows = large["rows"]
    print(f"\nOne hour of {args.events:,} events ({rows:,} rows over four tables):")
    print(f"{'':<34}{'seconds':>10}{'rows/s':>14}{'peak RSS MB':>14}{'Python heap MB':>16}")
    for name, result in (
        ("this loader (end to end)", large),
        ("engine limit (file() of unzipped)", engine),
        ("engine on the gzip-wrapped members", engine_gzip),
        ("seed-style loader", seed),
        (f"this loader, {args.small_events:,} events", small),
    ):
        rate = result["rows"] / result["seconds"]
        heap = f"{result['peak_heap_mb']:>16.1f}" if "peak_heap_mb" in result else f"{'-':>16}"
        print(f"{name:<34}{result['seconds']:>10.2f}{rate:>14,.0f}{result['peak_rss_mb']:>14.0f}{heap}")

    server_cpu_per_1m = server["cpu_seconds"] / server["rows"] * 1_000_000
    print(
        f"\nServer path ({server['rows']:,} rows, the server reading the bucket itself): worker CPU "
        f"{server['cpu_seconds']:.2f} s, wall {server['seconds']:.1f} s (the fake server's engine included)"
    )
    print(f"server_path_worker_cpu_s_per_1m={server_cpu_per_1m:.3f}")

    ratio_to_limit = engine["seconds"] / large["seconds"]
    speedup_over_seed = seed["seconds"] / large["seconds"]
    rss_growth = large["peak_rss_mb"] / small["peak_rss_mb"]
    print("\nTargets:")
    print(
        f"  share of the engine's limit  {ratio_to_limit:5.2f} x   (target >= 0.6)  {_verdict(ratio_to_limit >= 0.6)}"
    )
    print(
        f"  speed-up over seed-style     {speedup_over_seed:5.2f} x   (target >= 3)    {_verdict(speedup_over_seed >= 3)}"
    )
    print(
        f"  peak RSS 1M / 100k           {rss_growth:5.2f} x   (target <= 1.5)  {_verdict(rss_growth <= 1.5)}"
    )
    print(
        f"  server path worker CPU / 1M  {server_cpu_per_1m:5.2f} s   (target <= 9.2)  {_verdict(server_cpu_per_1m <= 9.2)}"
    )


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


if __name__ == "__main__":
    main()
