"""The BigQuery load and MERGE against bqemulator (DuckDB behind the BigQuery REST API).

Result files are the golden results with their job identity varied. They are written to the
results bucket in fake-gcs-server (what the loader lists) and, byte for byte, under the
emulator's BQEMU_GCS_LOCAL_ROOT, which is where bqemulator's load jobs read ``gs://`` URIs
from (it does not talk to a GCS emulator).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.bq_emulator import BigQueryEmulator
from workers.ops.bq_load import BigQueryLoader, result_uris
from workers.core.contracts import Result, dumps, loads
from devstack import emulators
from workers.core.jobs import make_job_id, result_key

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
DATASET = "speech"


@pytest.fixture(scope="module")
def bq(tmp_path_factory):
    root = tmp_path_factory.mktemp("bq")
    try:
        emulator = BigQueryEmulator(project=emulators.PROJECT, gcs_root=root / "gcs",
                                    log_path=root / "bqemulator.log").start()
    except RuntimeError as e:
        pytest.fail(f"bqemulator did not start: {e}")
    client = emulator.client()
    client.create_dataset(DATASET, exists_ok=True)
    try:
        yield emulator, client
    finally:
        client.close()
        emulator.stop()


def _result(golden: str, *, bucket: str, name: str, generation: int, completed_at: str = "",
            pipeline_version: str = "", decode_warnings: tuple[str, ...] = ()) -> Result:
    data = json.loads((GOLDEN / golden).read_text())
    job = dict(data["job"], bucket=bucket, name=name, generation=generation,
               job_id=make_job_id(bucket, name, generation))
    data = dict(data, job=job)
    if decode_warnings:
        data["decode_warnings"] = list(decode_warnings)
    if completed_at:
        data["timings"] = dict(data["timings"], completed_at=completed_at)
    if pipeline_version:
        data["pipeline_version"] = pipeline_version
    return loads(Result, json.dumps(data))


def _publish(results: list[Result], *, gcs_store, results_bucket: str, local_root: Path) -> None:
    """Store each result where the pipeline would (the GCS emulator) and where bqemulator reads it."""
    for r in results:
        key = result_key(r.job.name)
        body = (dumps(r) + "\n").encode()
        gcs_store.write(results_bucket, key, body, if_generation_match=None)
        path = local_root / results_bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)


def test_loading_twice_leaves_one_row_per_object_and_a_reupload_or_reprocessing_replaces_its_row(
    bq, gcs_emulator, gcs_store, unique
):
    emulator, client = bq
    inbox, results_bucket = f"inbox-{unique}", f"results-{unique}"
    emulators.create_bucket(gcs_emulator, results_bucket)
    first = [_result("result.json", bucket=inbox, name=f"calls/{i:03d}.flac", generation=1000 + i)
             for i in range(20)]
    failed = [_result("result_failed.json", bucket=inbox, name=f"calls/bad-{i}.png", generation=5000 + i)
              for i in range(3)]
    _publish(first + failed, gcs_store=gcs_store, results_bucket=results_bucket, local_root=emulator.gcs_root)

    loader = BigQueryLoader(client, f"{emulators.PROJECT}.{DATASET}.results_{unique}")
    loader.ensure_table()
    uris = list(result_uris(gcs_store, results_bucket))
    assert len(uris) == 23

    once = loader.load(uris)
    twice = loader.load(list(result_uris(gcs_store, results_bucket)))
    assert (once.files, once.staged_rows, once.rows_before, once.rows_after) == (23, 23, 0, 23)
    assert (twice.files, twice.staged_rows, twice.rows_before, twice.rows_after) == (23, 23, 23, 23)

    # A re-upload of calls/007.flac (newer generation) replaces its row; only that file is loaded.
    newer = _result("result_failed.json", bucket=inbox, name="calls/007.flac", generation=9999)
    _publish([newer], gcs_store=gcs_store, results_bucket=results_bucket, local_root=emulator.gcs_root)
    third = loader.load([f"gs://{results_bucket}/{result_key('calls/007.flac')}"])
    assert (third.rows_before, third.rows_after) == (23, 23)
    # Loading the older result again afterwards does not bring the old generation back.
    older = _result("result.json", bucket=inbox, name="calls/007.flac", generation=1007)
    _publish([older], gcs_store=gcs_store, results_bucket=results_bucket, local_root=emulator.gcs_root)
    loader.load([f"gs://{results_bucket}/{result_key('calls/007.flac')}"])

    # A reprocessing run rewrites calls/003.flac's result for the same generation: its row follows,
    # and loading the earlier merge again afterwards does not bring it back.
    reprocessed = _result("result.json", bucket=inbox, name="calls/003.flac", generation=1003,
                          completed_at="2026-12-01T08:00:00.000Z", pipeline_version="9.9.9")
    for result in (reprocessed, first[3]):
        _publish([result], gcs_store=gcs_store, results_bucket=results_bucket, local_root=emulator.gcs_root)
        loader.load([f"gs://{results_bucket}/{result_key('calls/003.flac')}"])

    listed = list(client.query(
        f"SELECT job.name AS name, job.generation AS generation, status, error.code AS code, "
        f"ARRAY_LENGTH(segments) AS segments, pipeline_version FROM `{loader.table}`").result())
    rows = {r["name"]: r for r in listed}
    assert len(listed) == len(rows) == 23, "one row per audio object after five loads"
    assert (rows["calls/003.flac"]["generation"], rows["calls/003.flac"]["pipeline_version"]) == (1003, "9.9.9")
    assert rows["calls/004.flac"]["pipeline_version"] == first[4].pipeline_version != "9.9.9"
    assert (rows["calls/007.flac"]["generation"], rows["calls/007.flac"]["status"]) == (9999, "failed")
    assert rows["calls/007.flac"]["code"] == "not_audio"
    assert rows["calls/000.flac"]["segments"] == len(first[0].segments) > 0
    assert sum(r["status"] == "failed" for r in rows.values()) == 4
    leftovers = [t.table_id for t in client.list_tables(DATASET) if "_staging_" in t.table_id]
    assert leftovers == []


def _doc_queries() -> list[str]:
    text = (Path(__file__).parents[2] / "docs" / "bigquery.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```sql\n")[1:]]
    return [b for b in blocks if b.lstrip().startswith("SELECT")]


def test_the_documented_example_queries_run_on_loaded_results(bq, gcs_emulator, gcs_store, unique):
    emulator, client = bq
    results_bucket = f"results-{unique}"
    emulators.create_bucket(gcs_emulator, results_bucket)
    lost = ("12 packets skipped", "ended at 61.2 s of 75.0 s declared")
    rows = [_result("result.json", bucket="inbox", name="calls/2026/11/25/0001.wav", generation=1,
                    decode_warnings=lost),
            _result("result_failed.json", bucket="inbox", name="bad.png", generation=2)]
    _publish(rows, gcs_store=gcs_store, results_bucket=results_bucket, local_root=emulator.gcs_root)
    loader = BigQueryLoader(client, f"{emulators.PROJECT}.{DATASET}.docs_{unique}")
    loader.ensure_table()
    loader.load(list(result_uris(gcs_store, results_bucket)))

    queries = _doc_queries()
    assert len(queries) == 10
    answers = []
    for sql in queries:
        sql = sql.replace("project.speech.results", loader.table).replace("INTERVAL 30 DAY", "INTERVAL 36500 DAY")
        answers.append([dict(r) for r in client.query(sql).result()])
    negative, per_sentence, _, per_speaker, at_once, low_coverage, budget_spent, decoded_in_part, failures, \
        versions = answers
    assert negative[0]["file"] == "calls/2026/11/25/0001.wav" and negative[0]["segments"] == len(rows[0].segments)
    speakers = {s.speaker for s in rows[0].segments}
    assert {r["speaker"] for r in per_speaker} == speakers and len(speakers) == 2
    assert all(0 <= r["negative_voice_share"] <= 1 for r in per_speaker)
    assert len(per_sentence) == len(rows[0].segments)
    assert [(r["speaker"], r["other"]) for r in at_once] == [("S1", "S2")]
    assert at_once[0]["seconds_at_once"] == pytest.approx(0.2), "the golden's turns overlap from 0.7 to 0.9 s"
    assert low_coverage == [], "the golden result covers 99.3 % of its speech"
    assert budget_spent == [], "the golden result was repaired in full"
    assert decoded_in_part == [{"name": "calls/2026/11/25/0001.wav", "duration": rows[0].duration,
                                "lost": "; ".join(lost)}]
    assert failures[0]["code"] == "not_audio" and failures[0]["files"] == 1
    assert sum(v["files"] for v in versions) == 2


def test_a_table_made_by_the_previous_pipeline_gains_the_new_columns_and_keeps_its_rows(
    bq, gcs_emulator, gcs_store, unique
):
    """Rows of pipeline 0.1 (no speakers, channels or text sentiment) and 0.2 in one table."""
    from google.cloud import bigquery

    from workers.ops.bq_load import table_schema

    emulator, client = bq
    results_bucket = f"results-{unique}"
    emulators.create_bucket(gcs_emulator, results_bucket)
    old_schema = _without(table_schema(), {"channel", "speaker", "text_sentiment", "fused_sentiment",
                                           "channels", "speakers"})
    table = f"{emulators.PROJECT}.{DATASET}.old_{unique}"
    client.create_table(bigquery.Table(table, schema=[bigquery.SchemaField.from_api_repr(f) for f in old_schema]))
    old_rows = [json.loads((GOLDEN / "v0.1" / "result.json").read_text())]
    old_rows[0]["job"] = dict(old_rows[0]["job"], name="calls/old.wav")
    errors = client.insert_rows_json(table, old_rows)
    assert errors == []

    new = _result("result.json", bucket="inbox", name="calls/new.wav", generation=7)
    _publish([new], gcs_store=gcs_store, results_bucket=results_bucket, local_root=emulator.gcs_root)
    loader = BigQueryLoader(client, table)
    report = loader.load(list(result_uris(gcs_store, results_bucket)))
    assert (report.rows_before, report.rows_after) == (1, 2)
    columns = {f.name for f in client.get_table(table).schema}
    assert {"speakers", "channels"} <= columns
    rows = {r["name"]: r for r in client.query(
        f"SELECT job.name AS name, ARRAY_LENGTH(speakers) AS speakers FROM `{table}`").result()}
    assert rows["calls/new.wav"]["speakers"] == len(new.speakers) and rows["calls/old.wav"]["speakers"] in (0, None)


def _without(fields: list[dict], names: set[str]) -> list[dict]:
    return [dict(f, fields=_without(f["fields"], names)) if f.get("fields") else f
            for f in fields if f["name"] not in names]
