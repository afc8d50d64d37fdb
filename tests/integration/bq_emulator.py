"""bqemulator (DuckDB behind the BigQuery REST API) for tests, offline.

As shipped, bqemulator runs ``INSTALL spatial`` at start and refuses to start when DuckDB's
extension repository cannot be reached, which is always the case here. And it writes the
fields of a RECORD unquoted into DuckDB's DDL, so a field named like a keyword (``end`` in
the results schema's segments) is a syntax error; and a schema PATCH that adds columns changes
its catalog but not its DuckDB table. Run as a script, this module starts the emulator with
all three fixed: spatial is skipped (GEOGRAPHY is then unsupported; the results table has no
GEOGRAPHY column), nested field names are quoted, and added columns reach the table.
``BigQueryEmulator`` starts that script as a child process on a free 127.0.0.1 port, waits for
its REST API and stops it.

``load_table_from_uri("gs://BUCKET/KEY")`` is served from ``gcs_root/BUCKET/KEY`` on the
local disk (``BQEMU_GCS_LOCAL_ROOT``), never from a GCS emulator: tests put the result files
there themselves.

    python tests/integration/bq_emulator.py --port 9050 --project test-project --gcs-root /tmp/gcs
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BigQueryEmulator:
    def __init__(self, *, project: str, gcs_root: Path, log_path: Path) -> None:
        self.project = project
        self.gcs_root = gcs_root
        self.log_path = log_path
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    def start(self) -> "BigQueryEmulator":
        self.gcs_root.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--port", str(self.port), "--project", self.project,
             "--gcs-root", str(self.gcs_root)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"bqemulator exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.endpoint}/bigquery/v2/projects/{self.project}/datasets", timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"bqemulator did not answer within {STARTUP_SECONDS:.0f} s: {self.log_tail()}")

    def client(self):
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=self.endpoint),
        )

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


def _quote_record_fields() -> None:
    """Make bqemulator quote the names inside STRUCT(...) column types, as it does top-level ones."""
    from bqemulator.api.routes import tables
    from bqemulator.storage import type_map

    unquoted = type_map.bq_schema_to_duckdb_columns

    def columns(fields):
        out = []
        for f in fields:
            if f["type"].upper() not in ("RECORD", "STRUCT"):
                out.extend(unquoted([f]))
                continue
            spec = ", ".join(f'"{name}" {dtype}' for name, dtype in columns(f.get("fields", [])))
            repeated = f.get("mode", "NULLABLE").upper() == "REPEATED"
            out.append((f["name"], f"STRUCT({spec})" + ("[]" if repeated else "")))
        return out

    type_map.bq_schema_to_duckdb_columns = columns
    tables.bq_schema_to_duckdb_columns = columns


def _apply_schema_updates() -> None:
    """Make a table PATCH/PUT that adds columns alter the DuckDB table too (bqemulator changes only
    its catalog), as BigQuery does: new top-level columns are added, RECORDs that gained fields are
    recast by name, so existing rows read the new fields as NULL."""
    from bqemulator.api.routes import tables
    from bqemulator.catalog.duckdb_repository import DuckDBCatalogRepository
    from bqemulator.catalog.memory_repository import MemoryCatalogRepository
    from bqemulator.storage.sql_identifiers import quoted_table_ref

    def altering(update):
        def update_table(self, table):
            before = self.get_table(table.project_id, table.dataset_id, table.table_id)
            engine = getattr(self, "_engine", None)
            if engine is not None and before is not None and before.schema_.fields != table.schema_.fields:
                rest = [tables._field_to_rest(f) for f in before.schema_.fields]
                old = dict(tables.bq_schema_to_duckdb_columns(rest))
                target = quoted_table_ref(table.project_id, table.dataset_id, table.table_id)
                for name, dtype in tables.bq_schema_to_duckdb_columns(
                        [tables._field_to_rest(f) for f in table.schema_.fields]):
                    if name not in old:
                        engine.execute(f'ALTER TABLE {target} ADD COLUMN "{name}" {dtype}')
                    elif old[name] != dtype:
                        engine.execute(f'ALTER TABLE {target} ALTER "{name}" TYPE {dtype}')
            return update(self, table)
        return update_table

    for repository in (DuckDBCatalogRepository, MemoryCatalogRepository):
        repository.update_table = altering(repository.update_table)


def _serve(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="bqemulator without DuckDB's spatial extension")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--project", default="test-project")
    parser.add_argument("--gcs-root", type=Path, required=True)
    args = parser.parse_args(argv)

    from bqemulator.config import Settings
    from bqemulator.server import run_forever
    from bqemulator.storage.engine import DuckDBEngine

    # Offline there is no extension repository: skip spatial (GEOGRAPHY) instead of failing.
    DuckDBEngine._load_spatial = lambda self: None
    _quote_record_fields()
    _apply_schema_updates()
    os.environ.setdefault("BQEMU_LOG_LEVEL", "warning")
    run_forever(Settings(
        rest_host="127.0.0.1",
        rest_port=args.port,
        grpc_host="127.0.0.1",
        grpc_port=free_port(),
        default_project_id=args.project,
        gcs_local_root=args.gcs_root,
        enable_format_extensions=False,
    ))


if __name__ == "__main__":
    _serve(sys.argv[1:])
