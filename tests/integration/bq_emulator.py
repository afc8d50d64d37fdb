"""bqemulator (DuckDB behind the BigQuery REST API) for tests, offline.

As shipped, bqemulator runs ``INSTALL spatial`` at start and refuses to start when DuckDB's
extension repository cannot be reached, which is always the case here. And it writes the
fields of a RECORD unquoted into DuckDB's DDL, so a field named like a keyword (``end`` in
the results schema's segments) is a syntax error. Run as a script, this module starts the
emulator with both fixed: spatial is skipped (GEOGRAPHY is then unsupported; the results
table has no GEOGRAPHY column) and nested field names are quoted. ``BigQueryEmulator`` starts that script as a child
process on a free 127.0.0.1 port, waits for its REST API and stops it.

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
