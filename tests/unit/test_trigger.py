"""The trigger, served in-process by functions-framework, fed golden CloudEvents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import functions_framework
import pytest
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

from workers.adapters.memory import MemoryBus
from workers.core.errors import ConfigError
from workers.core.jobs import make_job_id
from workers.core.settings import REPO_ROOT, Settings

EVENTS = Path(__file__).parents[1] / "data" / "events"
SETTINGS = Settings.from_env({}, inbox_bucket="inbox-bucket", inbox_prefix="calls/", staging_bucket="staging-bucket",
                             results_bucket="results-bucket", jobs_topic="jobs")


@pytest.fixture
def trigger():
    app = functions_framework.create_app(target="on_finalized", source=str(REPO_ROOT / "trigger" / "main.py"),
                                         signature_type="cloudevent")
    bus = MemoryBus()
    sys.modules["main"]._wiring.update(settings=SETTINGS, bus=bus)
    return app.test_client(), bus


def event(name: str) -> dict:
    return json.loads((EVENTS / name).read_text())


def post_structured(client, body: dict):
    return client.post("/", data=json.dumps(body), headers={"Content-Type": "application/cloudevents+json"})


def test_an_uploaded_audio_file_becomes_one_job_with_the_shared_job_id(trigger):
    client, bus = trigger
    assert post_structured(client, event("finalized_audio.json")).status_code == 200
    [(topic, job, attributes)] = bus.messages
    assert topic == "jobs"
    assert job == {
        "job_id": make_job_id("inbox-bucket", "calls/2026/en_weather.flac", 1732530000123456),
        "bucket": "inbox-bucket", "name": "calls/2026/en_weather.flac", "generation": 1732530000123456,
        "content_type": "audio/flac", "size": 115648, "source": "upload", "submitted_at": job["submitted_at"],
    }
    assert attributes["job_id"] == job["job_id"] and attributes["event_id"] == "9139441046811286"


def test_binary_mode_cloudevents_work_too(trigger):
    client, bus = trigger
    body = event("finalized_audio.json")
    data = body.pop("data")
    headers, payload = to_binary(CloudEvent(body, data))
    assert client.post("/", data=payload, headers=headers).status_code == 200
    assert len(bus.messages) == 1


ODD_NAMES = ["calls/ünïcödé 日本語.wav", "calls/\u202evaw.3pm.wav", "calls/new\nline.wav", 'calls/100% "a b".wav']


@pytest.mark.parametrize("name", ODD_NAMES)
def test_the_bridge_sends_any_object_name_in_headers_http_can_carry_and_the_trigger_gets_it_whole(trigger, name):
    from urllib.parse import unquote

    import requests

    from devstack.bridge import http_request

    client, bus = trigger
    body = event("finalized_audio.json")
    data = {**body.pop("data"), "name": name}
    headers, payload = http_request(CloudEvent({**body, "subject": f"objects/{name}"}, data))
    assert all(v.isascii() and v.isprintable() and " " not in v for k, v in headers.items() if k.startswith("ce-"))
    assert unquote(headers["ce-subject"]) == f"objects/{name}"
    requests.Request("POST", "http://127.0.0.1/", headers=headers, data=payload).prepare()  # a header it can send
    assert client.post("/", data=payload, headers=headers).status_code == 200
    [(_, job, _)] = bus.messages
    assert job["name"] == name


@pytest.mark.parametrize("name", ["finalized_not_audio.json", "finalized_empty.json"])
def test_non_audio_and_empty_candidates_still_become_jobs_so_they_get_a_failed_result(trigger, name):
    client, bus = trigger
    assert post_structured(client, event(name)).status_code == 200
    assert len(bus.messages) == 1


@pytest.mark.parametrize("name", [
    "finalized_folder_marker.json", "finalized_outside_prefix.json", "finalized_ignored.json",
    "finalized_results_bucket.json",
])
def test_folder_markers_outside_prefix_ignored_names_and_own_outputs_are_skipped(trigger, name, caplog):
    client, bus = trigger
    with caplog.at_level("INFO", logger="trigger"):
        assert post_structured(client, event(name)).status_code == 200
    assert bus.messages == []
    assert any("skipped" in r.getMessage() for r in caplog.records)


def test_the_same_event_delivered_twice_gives_the_same_job_message(trigger):
    client, bus = trigger
    for _ in range(2):
        post_structured(client, event("finalized_audio.json"))
    first, second = (m for _, m, _ in bus.messages)
    assert first == second and first["submitted_at"] == "2026-11-25T10:00:00.120Z"  # the object's creation


def test_a_malformed_event_is_logged_and_acknowledged_not_retried(trigger, caplog):
    client, bus = trigger
    body = event("finalized_audio.json")
    body["data"]["generation"] = "not-a-number"
    with caplog.at_level("INFO", logger="trigger"):
        assert post_structured(client, body).status_code == 200
    assert bus.messages == [] and "malformed event" in caplog.text


def test_an_inbox_that_is_also_an_output_bucket_is_refused():
    with pytest.raises(ConfigError, match="separate buckets"):
        Settings.from_env({}, inbox_bucket="b", results_bucket="b")


def test_the_trigger_loads_no_engine_model_library_or_handler():
    probe = (
        "import sys, functions_framework; "
        f"functions_framework.create_app(target='on_finalized', source={str(REPO_ROOT / 'trigger' / 'main.py')!r}, "
        "signature_type='cloudevent'); "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'faster_whisper', 'transformers', 'ctranslate2', 'av', 'numpy') "
        "or m.startswith(('workers.engines', 'workers.processing', 'workers.entrypoints', 'workers.ops')))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT,
                            check=True).stdout.strip()
    assert loaded == ""
