"""status, redrive and the stuck-job report over the in-memory fakes."""

from __future__ import annotations

import json

import pytest
from datetime import datetime, timedelta, timezone

from tests.result_factory import stored_partial, stored_result
from workers.ops import tracking as ops
from workers.adapters.memory import MemoryBlobStore, MemoryBus
from workers.core.errors import TransientError
from workers.core.jobs import make_job, make_job_id, partial_key, result_key
from workers.ops.ledger import Ledger
from workers.ops.tracking import DeadLetter, redrive, stuck_jobs, upload_status


@pytest.fixture(autouse=True)
def no_pause_between_empty_pulls(monkeypatch):
    monkeypatch.setattr(ops, "EMPTY_PULL_PAUSE_SECONDS", 0.0)


class FakeDeadLetters:
    def __init__(self, messages: dict[str, list[DeadLetter]]) -> None:
        self.waiting = {k: list(v) for k, v in messages.items()}
        self.leased: dict[str, dict[str, DeadLetter]] = {}
        self.acked: list[str] = []

    def pull(self, subscription, max_messages):
        batch = self.waiting.get(subscription, [])[:max_messages]
        self.waiting[subscription] = self.waiting.get(subscription, [])[len(batch):]
        self.leased.setdefault(subscription, {}).update({m.ack_id: m for m in batch})
        return batch

    def ack(self, subscription, ack_ids):
        for a in ack_ids:
            self.leased[subscription].pop(a)
            self.acked.append(a)

    def nack(self, subscription, ack_ids):
        self.waiting[subscription] += [self.leased[subscription].pop(a) for a in ack_ids]


def _letter(sub, n, body, **attrs) -> DeadLetter:
    return DeadLetter(sub, f"{sub}-{n}", json.dumps(body).encode() if body is not None else b"\xff", attrs)


def _job(name="call.wav", generation=7):
    return make_job(bucket="inbox", name=name, generation=generation, size=1, content_type=None, source="upload")


def test_status_walks_an_upload_from_queued_to_result():
    store = MemoryBlobStore()
    generation = store.put("inbox", "call.wav", b"RIFF")
    job_id = make_job_id("inbox", "call.wav", generation)

    def stage():
        return upload_status(store, bucket="inbox", name="call.wav", staging_bucket="staging",
                             results_bucket="results", ledger=Ledger(store, "staging", run_id="r")).stage

    assert stage().startswith("queued, or not picked up")
    job = make_job(bucket="inbox", name="call.wav", generation=generation, size=4, content_type=None,
                   source="backfill")
    Ledger(store, "staging", run_id="r1").claim(job, if_generation_match=0)
    assert stage().startswith("queued by a backfill (claimed")
    store.write("staging", partial_key(job_id, "stt"), stored_partial(job_id, "stt"), if_generation_match=0)
    assert stage() == "STT done, SER pending"
    store.write("staging", partial_key(job_id, "ser"),
                stored_partial(job_id, "ser", status="failed", error={"code": "x", "message": "y"}),
                if_generation_match=0)
    assert stage() == "STT and SER done, waiting for the joiner"
    result = stored_result("inbox", "call.wav", generation, status="failed",
                           error={"code": "not_audio", "message": "m"})
    store.write("results", result_key("call.wav"), result, if_generation_match=0)
    status = upload_status(store, bucket="inbox", name="call.wav", staging_bucket="staging", results_bucket="results")
    assert status.stage == "result failed" and status.result_error == "not_audio: m"
    assert status.ser == "failed (x: y)"
    assert any("result" in line and "not_audio" in line for line in status.lines())
    assert upload_status(store, bucket="inbox", name="gone.wav", staging_bucket="staging",
                         results_bucket="results").stage == "not in the inbox"


def test_status_does_not_call_an_upload_superseded_by_a_job_for_a_generation_that_never_existed():
    store = MemoryBlobStore()
    generation = store.put("inbox", "victim.wav", b"RIFF")
    forged = stored_result("inbox", "victim.wav", 2**62, status="failed",
                           error={"code": "source_gone", "message": "inbox/victim.wav does not exist"})
    store.write("results", result_key("victim.wav"), forged, if_generation_match=0)
    status = upload_status(store, bucket="inbox", name="victim.wav", staging_bucket="staging", results_bucket="results")
    assert status.generation == generation
    assert status.stage.startswith("queued, or not picked up"), "a source_gone result does not outrank it"


def test_status_finds_a_dead_letter_and_leaves_it_in_place():
    store = MemoryBlobStore()
    generation = store.put("inbox", "call.wav", b"RIFF")
    job = _job(generation=generation)
    queue = FakeDeadLetters({"stt-dl": [_letter("stt-dl", i, {"job_id": f"other{i}"}) for i in range(150)]
                             + [_letter("stt-dl", 999, {"job_id": job.job_id, "generation": generation})]})
    status = upload_status(store, bucket="inbox", name="call.wav", staging_bucket="staging", results_bucket="results",
                           dead_letters=queue, dead_letter_subscriptions=("stt-dl",))
    assert status.dead_lettered == ["stt-dl"] and status.stage == "dead-lettered"
    assert len(queue.waiting["stt-dl"]) == 151 and queue.acked == []


def test_redrive_sends_jobs_and_partials_back_to_their_topics_and_leaves_what_it_cannot_place():
    job = _job()
    ready = {"job": {"job_id": job.job_id}, "kind": "stt", "status": "ok", "staging_bucket": "s",
             "staging_key": "k"}
    queue = FakeDeadLetters({
        "stt-dl": [_letter("stt-dl", 1, {"job_id": job.job_id, "generation": 7},
                           job_id=job.job_id, CloudPubSubDeadLetterSourceSubscription="stt"),
                   _letter("stt-dl", 2, None)],
        "joiner-dl": [_letter("joiner-dl", 1, ready)],
    })
    bus = MemoryBus()
    dry = redrive(queue, bus, ("stt-dl", "joiner-dl"), jobs_topic="jobs", partials_topic="partials", dry_run=True)
    assert dry.republished == {"jobs": 1, "partials": 1} and bus.messages == [] and queue.acked == []

    summary = redrive(queue, bus, ("stt-dl", "joiner-dl"), jobs_topic="jobs", partials_topic="partials")
    assert summary.republished == {"jobs": 1, "partials": 1} and summary.unreadable == 1
    assert [(t, a) for t, _, a in bus.messages] == [
        ("jobs", {"job_id": job.job_id, "redriven_from": "stt-dl"}),
        ("partials", {"redriven_from": "joiner-dl"}),
    ]
    assert sorted(queue.acked) == ["joiner-dl-1", "stt-dl-1"]
    assert [m.ack_id for m in queue.waiting["stt-dl"]] == ["stt-dl-2"]


class HesitantDeadLetters(FakeDeadLetters):
    """Answers every other pull with nothing, as Pub/Sub may while messages wait."""

    def __init__(self, messages) -> None:
        super().__init__(messages)
        self.pulls = 0

    def pull(self, subscription, max_messages):
        self.pulls += 1
        return [] if self.pulls % 2 else super().pull(subscription, min(max_messages, 1))


def test_redrive_does_not_stop_at_one_empty_pull():
    jobs = [_job(f"{i}.wav") for i in range(5)]
    queue = HesitantDeadLetters({"stt-dl": [_letter("stt-dl", i, {"job_id": j.job_id, "generation": 7})
                                            for i, j in enumerate(jobs)]})
    summary = redrive(queue, MemoryBus(), ("stt-dl",), jobs_topic="jobs", partials_topic="partials")
    assert summary.republished == {"jobs": 5} and queue.waiting["stt-dl"] == []


class BrokenAfter(MemoryBus):
    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    def publish(self, topic, message, attributes):
        if len(self.messages) >= self.good:
            raise TransientError("topic unavailable")
        return super().publish(topic, message, attributes)


def test_redrive_acks_what_it_republished_before_a_publish_failed():
    jobs = [_job(f"{i}.wav") for i in range(4)]
    queue = FakeDeadLetters({"stt-dl": [_letter("stt-dl", i, {"job_id": j.job_id, "generation": 7})
                                        for i, j in enumerate(jobs)]})
    with pytest.raises(TransientError):
        redrive(queue, BrokenAfter(2), ("stt-dl",), jobs_topic="jobs", partials_topic="partials")
    assert queue.acked == ["stt-dl-0", "stt-dl-1"]  # a rerun will not send these two again


def test_stuck_reports_jobs_with_one_partial_older_than_the_threshold():
    store = MemoryBlobStore()
    job = _job()
    Ledger(store, "staging", run_id="r").claim(job, if_generation_match=0)
    store.write("staging", partial_key(job.job_id, "stt"), b"{}", if_generation_match=0)
    store.write("staging", partial_key("both", "stt"), b"{}", if_generation_match=0)
    store.write("staging", partial_key("both", "ser"), b"{}", if_generation_match=0)
    store.write("staging", partial_key("anon", "ser"), b"{}", if_generation_match=0)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    found = stuck_jobs(store, "staging", timedelta(hours=1), ledger=Ledger(store, "staging", run_id="s"), now=later)
    assert sorted((s.job_id, s.present, s.missing, s.name) for s in found) == sorted([
        ("anon", "ser", "stt", None), (job.job_id, "stt", "ser", "call.wav"),
    ])
    assert stuck_jobs(store, "staging", timedelta(hours=3), now=later) == []


def test_republishing_a_stuck_job_lets_the_missing_engine_finish_it_and_the_joiner_merge():
    from tests.handlers_factory import make_handlers
    from tests.unit.test_service import WAV, FakeSer, FakeStt, upload
    from workers.ops.tracking import republish_stuck

    store, bus = MemoryBlobStore(), MemoryBus()
    stuck_job, replaced = upload(store, "stuck.wav", WAV), upload(store, "replaced.wav", WAV)
    workers = make_handlers(store, bus, stt=FakeStt(), ser=FakeSer())
    workers.stt(stuck_job)  # SER's delivery was lost: one partial, no result
    workers.stt(replaced)
    upload(store, "replaced.wav", WAV)  # a newer generation has a job of its own
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    found = stuck_jobs(store, "staging", timedelta(hours=1), now=later)
    bus.messages.clear()

    sent = republish_stuck(store, bus, found, inbox_bucket="inbox", jobs_topic="jobs")

    assert sent == [stuck_job.job_id]
    _deliver(bus, workers)
    assert json.loads(store.read("results", result_key("stuck.wav"))[0])["status"] == "ok"
    still_stuck = [s for s in found if s.job_id != stuck_job.job_id]
    assert stuck_jobs(store, "staging", timedelta(hours=1), now=later) == still_stuck


def test_every_upload_with_no_result_past_the_deadline_is_found_whatever_its_partials_and_healed():
    from tests.handlers_factory import make_handlers
    from tests.unit.test_service import WAV, FakeSer, FakeStt, upload
    from workers.core.contracts import PartialReady, from_dict
    from workers.ops.tracking import jobs_to_heal, republish_stuck, unfinished_jobs

    store, bus = MemoryBlobStore(), MemoryBus()
    lost, done, half, both = (upload(store, f"{name}.wav", WAV) for name in ("lost", "done", "half", "both"))
    upload(store, ".DS_Store", b"\0")
    workers = make_handlers(store, bus, stt=FakeStt(), ser=FakeSer())
    for handle in (workers.stt, workers.ser):
        handle(done)
        handle(both)
    for message in bus.on("partials"):
        if message["job"]["name"] == "done.wav":  # the joiner's writes for both.wav failed until it was dropped
            workers.joiner(from_dict(PartialReady, message))
    workers.stt(half)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    kwargs = dict(inbox_bucket="inbox", staging_bucket="staging", results_bucket="results",
                  older_than=timedelta(hours=1), ignore=(".DS_Store",))

    found = unfinished_jobs(store, now=later, **kwargs)
    assert sorted((j.name, j.present, j.missing) for j in found) == [
        ("both.wav", "stt and ser", "the result"), ("half.wav", "stt", "ser"), ("lost.wav", "nothing", "stt and ser")]
    assert unfinished_jobs(store, now=datetime.now(timezone.utc), **kwargs) == [], "a fresh upload may be in flight"
    healing = jobs_to_heal(store, "staging", timedelta(hours=1), now=later,
                           **{k: v for k, v in kwargs.items() if k not in ("staging_bucket", "older_than")})
    assert sorted(j.job_id for j in healing) == sorted(j.job_id for j in found), "each job once"

    bus.messages.clear()
    sent = republish_stuck(store, bus, found, inbox_bucket="inbox", jobs_topic="jobs")
    assert sorted(sent) == sorted(j.job_id for j in (lost, half, both))
    _deliver(bus, workers)
    for name in ("lost.wav", "half.wav", "both.wav"):
        assert json.loads(store.read("results", result_key(name))[0])["status"] == "ok", name
    assert unfinished_jobs(store, now=later, **kwargs) == []


def _deliver(bus, workers) -> None:
    """What Pub/Sub would do with the bus's messages: each job to STT and SER, then the partials to the joiner."""
    from workers.core.contracts import JobMessage, PartialReady, from_dict

    for message in bus.on("jobs"):
        workers.stt(from_dict(JobMessage, message))
        workers.ser(from_dict(JobMessage, message))
    for message in bus.on("partials"):
        workers.joiner(from_dict(PartialReady, message))
