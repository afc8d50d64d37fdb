"""The whole cloud path on the real emulators with the real tiny models.

upload to the emulated inbox → fake-gcs-server notification → bridge → CloudEvent → trigger
(functions-framework) → jobs topic → STT ∥ SER push → partials → joiner → one result.
One stack per session; each test uses its own object names.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import requests

from tests.audio_factory import encode
from workers.adapters.pubsub import PubSubBus
from workers.processing.audio import decode
from workers.core.contracts import PartialReady, to_dict
from devstack import emulators
from devstack.bridge import cloud_event, http_request
from devstack.stack import Delivery, DevStack
from workers.core.jobs import make_job, make_job_id, partial_key, result_key
from workers.core.settings import REPO_ROOT

SAMPLE = REPO_ROOT / "samples" / "en_support_call.flac"
RESULT_SCHEMA = json.loads((REPO_ROOT / "schemas" / "result.schema.json").read_text())


@pytest.fixture(scope="session")
def stack(pubsub_emulator, gcs_emulator, fast_settings, tmp_path_factory):
    from tests.integration.conftest import GCS_NOTIFY_TOPIC, running

    with running(DevStack(fast_settings, tmp_path_factory.mktemp("stack"), pubsub_host_port=pubsub_emulator,
                          gcs_url=gcs_emulator, notify_topic=GCS_NOTIFY_TOPIC, prefix="e2e-",
                          # A short ack deadline and backoff so tests see redeliveries fast.
                          delivery=Delivery(ack_deadline_seconds=60, max_delivery_attempts=20,
                                            backoff_seconds=(0.5, 2.0)))) as dev:
        yield dev


@pytest.fixture(scope="session")
def audio_30s(tmp_path_factory) -> Path:
    """A 30 s spoken file: the English sample, repeated."""
    samples = decode(SAMPLE, max_seconds=600).samples
    reps = int(np.ceil(30 * 16000 / len(samples)))
    path = tmp_path_factory.mktemp("audio") / "call_30s.flac"
    path.write_bytes(encode(np.tile(samples, reps)[: 30 * 16000], fmt="flac"))
    return path


def result_writes(stack: DevStack, job_id: str) -> int:
    """How many times the joiner wrote a result for this job (its log says so once per write)."""
    text = stack.processes["joiner"].log_path.read_text(errors="replace")
    return len(re.findall(rf"result (ok|failed) written to .*\[job {job_id[:8]}\]", text))


def handled(stack: DevStack, role: str, job_id: str) -> int:
    """How many push deliveries for this job a service has answered (one outcome line each)."""
    text = stack.processes[role].log_path.read_text(errors="replace")
    return len(re.findall(rf"outcome \w+: .*\[job {job_id[:8]}\]", text))


def results_named(stack: DevStack, name: str) -> list[str]:
    return [b.name for b in stack.store.list(stack.names.results, name)]


def test_an_upload_becomes_exactly_one_schema_valid_result(stack, audio_30s):
    t0 = time.monotonic()
    name, generation = stack.upload(audio_30s, "e2e/one.flac")
    result = stack.wait_result(name, generation, timeout=180)
    latency = time.monotonic() - t0
    print(f"\nend-to-end latency of a 30 s file through the emulated stack: {latency:.2f} s")
    jsonschema.Draft202012Validator(RESULT_SCHEMA).validate(to_dict(result))
    assert result.status == "ok" and result.job.source == "upload"
    assert result.job.job_id == make_job_id(stack.names.inbox, name, generation)
    text = " ".join(s.text for s in result.segments).lower()
    assert len(text.split()) > 20
    assert all(s.emotion is not None for s in result.segments)
    assert results_named(stack, name) == [result_key(name)]
    assert result_writes(stack, result.job.job_id) == 1


def test_the_same_event_delivered_five_more_times_still_gives_one_result(stack):
    name, generation = stack.upload(SAMPLE, "e2e/dup.flac")
    info = stack.store.stat(stack.names.inbox, name)
    message = type("Notification", (), {})()
    message.attributes = {"eventType": "OBJECT_FINALIZE", "payloadFormat": "JSON_API_V1",
                          "bucketId": stack.names.inbox, "objectId": name, "eventTime": info.updated}
    message.data = json.dumps({"bucket": info.bucket, "name": name, "generation": str(generation),
                               "size": str(info.size), "contentType": "audio/flac"}).encode()
    message.message_id = "redelivered-1"
    headers, body = http_request(cloud_event(message))
    for _ in range(5):  # Eventarc's at-least-once delivery, exaggerated
        assert requests.post(stack.urls["trigger"] + "/", data=body, headers=headers, timeout=30).ok
    result = stack.wait_result(name, generation, timeout=180)
    job_id = result.job.job_id
    # Six job messages (the upload's event and five repeats): every one reaches STT and SER,
    # and every partial announcement the joiner. Wait until all of them were handled.
    expected = {"stt": 6, "ser": 6, "joiner": 12}
    deadline = time.monotonic() + 180
    while any(handled(stack, role, job_id) < n for role, n in expected.items()):
        assert time.monotonic() < deadline, {role: handled(stack, role, job_id) for role in expected}
        time.sleep(0.2)
    assert results_named(stack, name) == [result_key(name)]
    assert result_writes(stack, job_id) == 1
    assert stack.result(name).job.job_id == job_id


def test_a_worker_killed_mid_job_is_completed_by_redelivery(stack, audio_30s):
    stt_log = stack.processes["stt"].log_path
    seen = len(stt_log.read_text(errors="replace"))
    name, generation = stack.upload(audio_30s, "e2e/killed.flac")
    job_id = make_job_id(stack.names.inbox, name, generation)
    deadline = time.monotonic() + 60
    while "stt job received" not in stt_log.read_text(errors="replace")[seen:]:
        assert time.monotonic() < deadline, "the STT service never received the job"
        time.sleep(0.02)
    stack.kill("stt")
    assert stack.store.stat(stack.names.staging, partial_key(job_id, "stt")) is None, "job finished before kill"
    stack.restart("stt")
    result = stack.wait_result(name, generation, timeout=180)
    assert result.status == "ok"
    assert results_named(stack, name) == [result_key(name)]


def test_a_restarted_worker_gets_no_push_before_it_is_ready(stack, tmp_path):
    """As Cloud Run's startup probe does: a push that met a closed port or a 503 while the model
    loads would be a failed delivery, counted towards dead-lettering."""
    stack.kill("ser")
    before = stack.processes["ser"]
    log_start = len(before.log_path.read_text(errors="replace"))
    restarting = threading.Thread(target=stack.restart, args=("ser",))
    restarting.start()
    deadline = time.monotonic() + 30
    while stack.processes["ser"] is before:  # spawned: now the job is pushed at once, if at all
        assert time.monotonic() < deadline, "ser was never started again"
        time.sleep(0.01)
    audio = tmp_path / "restart.wav"
    audio.write_bytes(encode(np.zeros(16000, dtype=np.float32)))
    name, generation = stack.upload(audio, "e2e/while-ser-restarts.wav")
    restarting.join(120)
    assert stack.wait_result(name, generation, timeout=120).status == "ok"
    log = before.log_path.read_text(errors="replace")[log_start:]
    job_id = make_job_id(stack.names.inbox, name, generation)
    assert "still loading its model" not in log, log
    assert len(re.findall(rf"ser job received .*\[job {job_id[:8]}\]", log)) == 1, log


def test_a_message_that_always_fails_lands_in_the_dead_letter_subscription(stack, unique):
    topic, dead = f"poison-{unique}", f"poison-{unique}-dead-letter"
    emulators.create_topic(topic)
    emulators.create_topic(dead)
    emulators.create_subscription(dead, dead)
    emulators.create_subscription(f"{topic}-joiner", topic, push_endpoint=stack.urls["joiner"] + "/push/partial",
                                  dead_letter_topic=dead, max_delivery_attempts=5, min_backoff_seconds=0.1,
                                  max_backoff_seconds=0.5, ack_deadline_seconds=10)
    joiner_log = stack.processes["joiner"].log_path
    failures_before = joiner_log.read_text(errors="replace").count("unexpected failure on /push/partial")
    # Unreadable partials (a bug, not bad audio): the joiner answers 500 every time.
    job = make_job(bucket=stack.names.inbox, name=f"poison-{unique}.flac", generation=1, size=1,
                   content_type=None, source="upload")
    for kind in ("stt", "ser"):
        stack.store.write(stack.names.staging, partial_key(job.job_id, kind), b"{corrupt", if_generation_match=0)
    bus = PubSubBus(emulators.PROJECT)
    try:
        bus.publish(topic, to_dict(PartialReady(job, "stt", "ok", stack.names.staging,
                                                partial_key(job.job_id, "stt"))), {"job_id": job.job_id})
    finally:
        bus.close()
    kept = []
    deadline = time.monotonic() + 60
    while not kept and time.monotonic() < deadline:
        kept = emulators.pull(dead, ack=False)
        time.sleep(0.5)
    assert len(kept) == 1 and json.loads(kept[0].data)["job"]["job_id"] == job.job_id
    assert stack.result(job.name) is None
    failures = joiner_log.read_text(errors="replace").count("unexpected failure on /push/partial")
    assert failures - failures_before == 5  # one 500 per delivery attempt, then the dead-letter topic


def test_the_api_calls_stt_and_ser_concurrently_through_real_services(stack, audio_30s):
    stack.start_service("api", extra_env={"STT_URL": stack.urls["stt"], "SER_URL": stack.urls["ser"],
                                          "ID_TOKENS": "off"})
    emulators.wait_http(stack.urls["api"] + "/healthz", 60, stack.processes["api"].proc,
                        stack.processes["api"].log_path, ok_only=True)
    body = audio_30s.read_bytes()
    t0 = time.monotonic()
    response = requests.post(stack.urls["api"] + "/v1/analyze", data=body,
                             headers={"Content-Type": "audio/flac", "X-Filename": "call_30s.flac"}, timeout=300)
    wall = time.monotonic() - t0
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "ok" and result["job"]["source"] == "api"
    stt, ser = result["timings"]["stt"], result["timings"]["ser"]
    print(f"\n/v1/analyze of 30 s: {wall:.2f} s wall; stt {stt['started_at']}..{stt['finished_at']} "
          f"({stt['seconds']:.2f} s), ser {ser['started_at']}..{ser['finished_at']} ({ser['seconds']:.2f} s)")
    assert stt["started_at"] < ser["finished_at"] and ser["started_at"] < stt["finished_at"]
    bad = requests.post(stack.urls["api"] + "/v1/analyze", data=b"definitely not audio", timeout=60)
    assert bad.status_code == 422 and bad.json()["status"] == "failed"
