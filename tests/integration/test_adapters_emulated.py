"""The GCS and Pub/Sub adapters against the real emulators: the semantics the handlers rely on."""

from __future__ import annotations

import json
import time

import pytest

from workers.adapters.pubsub import PubSubBus
from devstack import emulators
from workers.core.errors import NotFound, PreconditionFailed, TransientError


def test_write_if_absent_stores_once_and_412_becomes_precondition_failed(gcs_emulator, gcs_store, unique):
    bucket = f"staging-{unique}"
    emulators.create_bucket(gcs_emulator, bucket)
    generation = gcs_store.write(bucket, "job/stt.json", b'{"a":1}', if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        gcs_store.write(bucket, "job/stt.json", b'{"a":2}', if_generation_match=0)
    assert gcs_store.read(bucket, "job/stt.json") == (b'{"a":1}', generation)
    newer = gcs_store.write(bucket, "job/stt.json", b'{"a":3}', if_generation_match=generation)
    assert newer > generation
    with pytest.raises(PreconditionFailed):
        gcs_store.write(bucket, "job/stt.json", b'{"a":4}', if_generation_match=generation)


def test_download_streams_one_generation_and_a_replaced_one_is_gone(gcs_emulator, gcs_store, unique, tmp_path):
    bucket = f"inbox-{unique}"
    emulators.create_bucket(gcs_emulator, bucket)
    first = gcs_store.write(bucket, "a/b.wav", b"first", if_generation_match=None, content_type="audio/wav")
    info = gcs_store.stat(bucket, "a/b.wav")
    assert (info.generation, info.size, info.content_type) == (first, 5, "audio/wav")
    gcs_store.download(bucket, "a/b.wav", first, tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == b"first"
    gcs_store.write(bucket, "a/b.wav", b"second", if_generation_match=None)
    with pytest.raises(NotFound):
        gcs_store.download(bucket, "a/b.wav", first, tmp_path / "y")
    assert gcs_store.stat(bucket, "missing") is None
    with pytest.raises(NotFound):
        gcs_store.read(bucket, "missing")


def test_list_is_name_ordered_under_a_prefix_and_a_missing_bucket_write_is_transient(gcs_emulator, gcs_store, unique):
    bucket = f"results-{unique}"
    emulators.create_bucket(gcs_emulator, bucket)
    for name in ("b/2.json", "a/1.json", "b/1.json"):
        gcs_store.write(bucket, name, b"{}", if_generation_match=0)
    assert [b.name for b in gcs_store.list(bucket, "b/")] == ["b/1.json", "b/2.json"]
    with pytest.raises(TransientError):
        gcs_store.write(f"absent-{unique}", "x.json", b"{}", if_generation_match=0)


def test_publish_returns_after_the_emulator_accepted_the_message(pubsub_emulator, unique):
    topic = f"jobs-{unique}"
    emulators.create_topic(topic)
    emulators.create_subscription(f"{topic}-pull", topic)
    bus = PubSubBus(emulators.PROJECT)
    try:
        ids = {bus.publish(topic, {"n": n}, {"job_id": f"j{n}"}) for n in range(20)}
    finally:
        bus.close()
    assert len(ids) == 20
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 20 and time.monotonic() < deadline:
        got += emulators.pull(f"{topic}-pull")
    assert sorted(json.loads(m.data)["n"] for m in got) == list(range(20))
    assert {m.attributes["job_id"] for m in got} == {f"j{n}" for n in range(20)}


def test_publish_to_a_missing_topic_is_transient(pubsub_emulator, unique):
    bus = PubSubBus(emulators.PROJECT)
    try:
        with pytest.raises(TransientError):
            bus.publish(f"absent-{unique}", {}, {})
    finally:
        bus.close()


def test_an_emulator_that_does_not_come_up_is_stopped_not_left_running(pubsub_emulator, tmp_path):
    import socket

    import psutil

    # Its port is taken: fake-gcs-server exits, and the start reports that instead of the
    # answer of whatever holds the port.
    with socket.socket() as squatter:
        squatter.bind((emulators.HOST, 0))
        squatter.listen()
        server = emulators.FakeGcsServer(tmp_path / "gcs", port=squatter.getsockname()[1])
        with pytest.raises(RuntimeError, match="exited"):
            server.start(timeout=20)
    # The Pub/Sub emulator given no time at all: the start fails and stops the child it spawned.
    emulator = emulators.PubSubEmulator(tmp_path / "pubsub")
    with pytest.raises(RuntimeError, match="did not answer"):
        emulator.start(timeout=0.0)
    time.sleep(0.5)
    left = [p for p in psutil.Process().children(recursive=True)
            if str(emulator.port) in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE]
    assert left == []
