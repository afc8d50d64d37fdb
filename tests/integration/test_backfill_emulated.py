"""Backfill, status and redrive against fake-gcs-server and the Pub/Sub emulator.

No worker runs: the jobs topic has one pull subscription that only counts what arrives.
"""

from __future__ import annotations

import json
import time

from tests.result_factory import stored_partial, stored_result
from workers.adapters.pubsub import PubSubBus
from workers.adapters.pubsub_pull import PubSubDeadLetters
from workers.ops.backfill import Backfill, BackfillOptions, BackfillSummary
from devstack import emulators
from workers.core.jobs import make_job, partial_key, result_key
from workers.ops.ledger import Ledger
from workers.ops.tracking import redrive, upload_status

OBJECTS = 500
WITH_RESULT = 120


def _drain(subscription: str, expected: int, timeout: float = 20.0) -> list:
    """What arrives within ``timeout``; stops early once ``expected`` (> 0) messages came. With
    ``expected`` 0 it listens for the whole timeout, so "nothing arrived" means something."""
    got: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = emulators.pull(subscription, max_messages=1000)
        got += batch
        if not batch and len(got) >= expected > 0:
            break
        if not batch:
            time.sleep(0.1)
    return got


def test_backfill_of_500_objects_publishes_those_without_a_result_once(gcs_emulator, gcs_store, pubsub_emulator,
                                                                       unique, capsys):
    inbox, results, staging, topic = f"inbox-{unique}", f"results-{unique}", f"staging-{unique}", f"jobs-{unique}"
    for bucket in (inbox, results, staging):
        emulators.create_bucket(gcs_emulator, bucket)
    emulators.create_topic(topic)
    emulators.create_subscription(f"{topic}-count", topic)
    for i in range(OBJECTS):
        generation = gcs_store.write(inbox, f"calls/{i:04d}.wav", b"RIFF" + bytes(i % 7), if_generation_match=None,
                                     content_type="audio/wav")
        if i < WITH_RESULT:
            gcs_store.write(results, result_key(f"calls/{i:04d}.wav"),
                            stored_result(inbox, f"calls/{i:04d}.wav", generation), if_generation_match=None)

    bus = PubSubBus(emulators.PROJECT)
    try:
        def run(run_id: str) -> BackfillSummary:
            backfill = Backfill(gcs_store, bus, inbox, results, topic, Ledger(gcs_store, staging, run_id=run_id))
            opts, summary = BackfillOptions(rate=0, concurrency=16), BackfillSummary()
            return backfill.publish(backfill.plan(opts, summary), opts, summary)

        first = run("first")
        received = _drain(f"{topic}-count", OBJECTS - WITH_RESULT)
        second = run("second")
    finally:
        bus.close()
    again = _drain(f"{topic}-count", 0, timeout=2.0)

    assert (first.listed, first.done, first.published, first.errors) == (
        OBJECTS, WITH_RESULT, OBJECTS - WITH_RESULT, [])
    names = sorted(json.loads(m.data)["name"] for m in received)
    assert names == [f"calls/{i:04d}.wav" for i in range(WITH_RESULT, OBJECTS)]
    assert {m.attributes["source"] for m in received} == {"backfill"}
    assert (second.published, second.in_flight, second.done) == (0, OBJECTS - WITH_RESULT, WITH_RESULT)
    assert again == []
    with capsys.disabled():
        print(f"\nbackfill: {first.published} messages in {first.seconds:.2f} s = {first.rate:.0f} messages/s "
              f"(fake-gcs-server ledger writes + Pub/Sub emulator, concurrency 16, no rate limit)")


def test_status_sees_a_dead_letter_and_redrive_republishes_it_to_the_jobs_topic(gcs_emulator, gcs_store,
                                                                              pubsub_emulator, unique):
    inbox, results, staging = f"inbox-{unique}", f"results-{unique}", f"staging-{unique}"
    jobs, dead = f"jobs-{unique}", f"stt-dead-letter-{unique}"
    for bucket in (inbox, results, staging):
        emulators.create_bucket(gcs_emulator, bucket)
    for topic in (jobs, dead):
        emulators.create_topic(topic)
    emulators.create_subscription(f"{jobs}-count", jobs)
    emulators.create_subscription(dead, dead, ack_deadline_seconds=10)  # Pub/Sub's shortest lease
    generation = gcs_store.write(inbox, "call.wav", b"RIFF", if_generation_match=None)
    job = make_job(bucket=inbox, name="call.wav", generation=generation, size=4, content_type=None, source="upload")
    gcs_store.write(staging, partial_key(job.job_id, "ser"), stored_partial(job.job_id, "ser"), if_generation_match=0)

    bus = PubSubBus(emulators.PROJECT)
    queue = PubSubDeadLetters(emulators.PROJECT)
    try:
        from workers.core.contracts import to_dict

        bus.publish(dead, to_dict(job), {"job_id": job.job_id, "CloudPubSubDeadLetterSourceSubscription": "stt"})
        status = upload_status(gcs_store, bucket=inbox, name="call.wav", staging_bucket=staging,
                               results_bucket=results, dead_letters=queue, dead_letter_subscriptions=(dead,))
        assert status.stage == "dead-lettered" and status.ser == "ok" and status.stt is None
        # Peeking handed the message back: redrive finds it, republishes, acknowledges.
        summary = redrive(queue, bus, (dead,), jobs_topic=jobs, partials_topic="unused")
    finally:
        queue.close()
        bus.close()
    assert summary.republished == {jobs: 1}
    moved = _drain(f"{jobs}-count", 1, timeout=10.0)
    assert [json.loads(m.data)["job_id"] for m in moved] == [job.job_id]
    assert "CloudPubSubDeadLetterSourceSubscription" not in moved[0].attributes
    assert moved[0].attributes["redriven_from"] == dead
    # Acknowledged, not just leased: nothing comes back even after the 10 s lease would have run out.
    assert _drain(dead, 0, timeout=12.0) == []
