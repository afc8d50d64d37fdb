"""Idempotent BigQuery load of the results bucket.

Every result file is one line of JSON that is a valid row of ``schemas/bigquery/results.json``.
A load lists the result files (a prefix, a range of update times), loads them with load jobs
(``NEWLINE_DELIMITED_JSON``) into a staging table of its own, then ``MERGE``s the staging
table into the results table on ``job.bucket`` + ``job.name``: per audio object the row with
the newest ``job.generation`` (then the latest merge) wins, so loading the same files twice
leaves one row per object, and a re-upload or a reprocessing run replaces its row. The
staging table is dropped afterwards and expires after a day if a load dies half-way.

The BigQuery client is passed in (the CLI builds it); the listing goes through the BlobStore
port, so the same code lists GCS, the GCS emulator or a folder.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Iterator

from workers.adapters.google_errors import google_errors
from workers.core.errors import ConfigError
from workers.core.jobs import RESULT_SUFFIX
from workers.core.ports import BlobStore
from workers.core.settings import REPO_ROOT

log = logging.getLogger(__name__)

SCHEMA_PATH = REPO_ROOT / "schemas" / "bigquery" / "results.json"
PARTITION_COLUMN = "submitted_at"
CLUSTER_COLUMNS = ("status",)
# BigQuery takes at most 10,000 source URIs per load job.
MAX_URIS_PER_JOB = 10_000
STAGING_EXPIRY = timedelta(days=1)


def table_schema() -> list[dict[str, Any]]:
    return json.loads(SCHEMA_PATH.read_text())


def split_table_id(table: str) -> tuple[str, str, str]:
    parts = table.replace(":", ".").split(".")
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"BIGQUERY_TABLE must be project.dataset.table, got {table!r}")
    return parts[0], parts[1], parts[2]


def merge_sql(table: str, staging: str, columns: Iterable[str]) -> str:
    """MERGE ``staging`` into ``table``: one row per (job.bucket, job.name), newest generation wins.

    Within the staging table the newest generation (then the latest completion) is picked
    first, so a batch holding two generations of one object still merges one row. A row is
    replaced by a newer generation, or by the same generation merged later: a reprocessing
    run (``backfill --reprocess-older-than``) rewrites the result file in place, and its row
    follows. Reloading the same results changes nothing; an older file never wins.
    """
    cols = list(columns)
    updates = ", ".join(f"`{c}` = S.`{c}`" for c in cols)
    names = ", ".join(f"`{c}`" for c in cols)
    values = ", ".join(f"S.`{c}`" for c in cols)
    return (
        f"MERGE `{table}` T\n"
        f"USING (\n"
        f"  SELECT * FROM `{staging}`\n"
        f"  WHERE TRUE\n"
        f"  QUALIFY ROW_NUMBER() OVER (\n"
        f"    PARTITION BY job.bucket, job.name ORDER BY job.generation DESC, timings.completed_at DESC) = 1\n"
        f") S\n"
        f"ON T.job.bucket = S.job.bucket AND T.job.name = S.job.name\n"
        f"WHEN MATCHED AND (S.job.generation > T.job.generation OR (S.job.generation = T.job.generation\n"
        f"                  AND S.timings.completed_at > T.timings.completed_at)) THEN\n"
        f"  UPDATE SET {updates}\n"
        f"WHEN NOT MATCHED THEN\n"
        f"  INSERT ({names}) VALUES ({values})"
    )


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """An RFC 3339 time, a date (midnight UTC), or an age such as ``90m``, ``26h``, ``7d`` (before now)."""
    text = text.strip()
    now = now or datetime.now(timezone.utc)
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(**{units[text[-1]]: float(text[:-1])})
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigError(f"{text!r} is neither an RFC 3339 time, a date, nor an age like 26h or 7d") from e
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def updated_between(updated: str | None, since: datetime | None, until: datetime | None) -> bool:
    if since is None and until is None:
        return True
    if not updated:
        return False
    when = datetime.fromisoformat(updated.replace("Z", "+00:00"))
    return (since is None or when >= since) and (until is None or when < until)


def with_new_fields(current: list[dict[str, Any]], wanted: list[dict[str, Any]],
                    path: str = "") -> tuple[list[dict[str, Any]], list[str]]:
    """``current`` (a table's schema) with the fields of ``wanted`` it lacks appended, at any
    depth of RECORD fields, and the dotted names of what was added. Existing fields are kept as
    they are: BigQuery lets a schema gain NULLABLE and REPEATED columns, never change one."""
    merged, added = [dict(f) for f in current], []
    by_name = {f["name"]: f for f in merged}
    for field in wanted:
        name = f"{path}{field['name']}"
        have = by_name.get(field["name"])
        if have is None:
            merged.append(field)
            added.append(name)
        elif field.get("fields") and have.get("fields") is not None:
            have["fields"], deeper = with_new_fields(have["fields"], field["fields"], f"{name}.")
            added += deeper
    return merged, added


def result_uris(store: BlobStore, bucket: str, prefix: str = "", *, since: datetime | None = None,
                until: datetime | None = None) -> Iterator[str]:
    """``gs://`` URIs of the result files under ``prefix`` updated in [since, until)."""
    for info in store.list(bucket, prefix):
        if info.name.endswith(RESULT_SUFFIX) and updated_between(info.updated, since, until):
            yield f"gs://{bucket}/{info.name}"


@dataclass(frozen=True)
class LoadReport:
    files: int
    staged_rows: int
    rows_before: int
    rows_after: int
    table: str

    @property
    def inserted(self) -> int:
        return self.rows_after - self.rows_before

    def lines(self) -> list[str]:
        return [
            f"result files loaded: {self.files}   staged rows: {self.staged_rows}",
            f"{self.table}: {self.rows_before} rows before, {self.rows_after} after "
            f"({self.inserted} new objects; the rest replaced or unchanged)",
        ]


class BigQueryLoader:
    """Loads result files into the results table; ``client`` is a ``google.cloud.bigquery.Client``."""

    def __init__(self, client: Any, table: str, *, location: str | None = None) -> None:
        self.client = client
        self.project, self.dataset, self.table_name = split_table_id(table)
        self.table = f"{self.project}.{self.dataset}.{self.table_name}"
        self.location = location

    def ensure_table(self) -> None:
        """Create the results table when absent (Terraform creates it in the cloud; dev and tests need it)."""
        from google.cloud import bigquery

        table = bigquery.Table(self.table, schema=self._schema())
        table.time_partitioning = bigquery.TimePartitioning(field=PARTITION_COLUMN)
        table.clustering_fields = list(CLUSTER_COLUMNS)
        self.client.create_table(table, exists_ok=True)
        self.add_new_columns()

    def add_new_columns(self) -> list[str]:
        """Add the columns a newer pipeline writes (all NULLABLE or REPEATED) to a table made by
        an older one, so its rows stay and new results load; returns the dotted names added."""
        from google.cloud import bigquery

        table = self.client.get_table(self.table)
        current = [f.to_api_repr() for f in table.schema]
        merged, added = with_new_fields(current, table_schema())
        if added:
            table.schema = [bigquery.SchemaField.from_api_repr(f) for f in merged]
            self.client.update_table(table, ["schema"])
            log.info("added columns to %s: %s", self.table, ", ".join(added))
        return added

    def load(self, uris: list[str]) -> LoadReport:
        from google.cloud import bigquery

        self.add_new_columns()
        before = self.count()
        if not uris:
            return LoadReport(0, 0, before, before, self.table)
        staging = f"{self.table}_staging_{uuid.uuid4().hex[:12]}"
        staging_table = bigquery.Table(staging, schema=self._schema())
        staging_table.expires = datetime.now(timezone.utc) + STAGING_EXPIRY
        try:
            with google_errors(f"load {len(uris)} result file(s) into {self.table}",
                               missing=ConfigError(f"BigQuery table {self.table} or a result file is missing"),
                               needs="roles/bigquery.dataEditor and roles/bigquery.jobUser",
                               malformed=lambda m: ConfigError(f"BigQuery rejected the load: {m}")):
                self.client.create_table(staging_table)
                staged = self._load_and_merge(uris, staging)
        finally:
            self.client.delete_table(staging, not_found_ok=True)
        return LoadReport(len(uris), staged, before, self.count(), self.table)

    def _load_and_merge(self, uris: list[str], staging: str) -> int:
        """Load the files into the staging table, MERGE it into the table; the rows staged."""
        from google.cloud import bigquery

        for i in range(0, len(uris), MAX_URIS_PER_JOB):
            config = bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
                schema=self._schema(),
                write_disposition=(bigquery.WriteDisposition.WRITE_TRUNCATE if i == 0
                                   else bigquery.WriteDisposition.WRITE_APPEND),
                max_bad_records=0,
            )
            job = self.client.load_table_from_uri(uris[i:i + MAX_URIS_PER_JOB], staging, job_config=config,
                                                  location=self.location)
            job.result()
            log.info("load job %s: %d files into %s", job.job_id, len(uris[i:i + MAX_URIS_PER_JOB]), staging)
        staged = self.count(staging)
        columns = [f["name"] for f in table_schema()]
        self.client.query(merge_sql(self.table, staging, columns), location=self.location).result()
        return staged

    def count(self, table: str | None = None) -> int:
        rows = self.client.query(f"SELECT COUNT(*) AS n FROM `{table or self.table}`",
                                 location=self.location).result()
        return int(next(iter(rows))["n"])

    def _schema(self) -> list:
        from google.cloud import bigquery

        return [bigquery.SchemaField.from_api_repr(f) for f in table_schema()]
