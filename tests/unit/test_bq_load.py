"""The pure parts of the BigQuery load: table ids, time arguments, the MERGE statement."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from workers.ops.bq_load import merge_sql, parse_when, split_table_id, table_schema
from workers.core.errors import ConfigError


def test_merge_keys_on_the_audio_object_and_replaces_with_a_newer_generation_or_a_later_merge():
    columns = [f["name"] for f in table_schema()]
    sql = merge_sql("p.d.t", "p.d.t_staging_1", columns)
    assert "ON T.job.bucket = S.job.bucket AND T.job.name = S.job.name" in sql
    assert "WHEN MATCHED AND (S.job.generation > T.job.generation OR (S.job.generation = T.job.generation" in sql
    assert "AND S.timings.completed_at > T.timings.completed_at)) THEN" in sql
    assert "PARTITION BY job.bucket, job.name ORDER BY job.generation DESC" in sql
    assert all(f"`{c}` = S.`{c}`" in sql for c in columns) and "submitted_at" in columns


def test_times_are_rfc3339_dates_or_ages_and_table_ids_have_three_parts():
    now = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
    assert parse_when("26h", now=now) == datetime(2026, 11, 24, 10, tzinfo=timezone.utc)
    assert parse_when("2026-11-01", now=now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert parse_when("2026-11-01T08:00:00Z") == datetime(2026, 11, 1, 8, tzinfo=timezone.utc)
    with pytest.raises(ConfigError, match="neither"):
        parse_when("yesterday")
    assert split_table_id("p:d.t") == ("p", "d", "t")
    with pytest.raises(ConfigError, match="project.dataset.table"):
        split_table_id("d.t")
