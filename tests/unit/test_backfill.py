"""Backfill selection, ledger and publishing over the in-memory fakes."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest

from tests.result_factory import stored_result
from workers.adapters.memory import MemoryBlobStore, MemoryBus
from workers.ops.backfill import Backfill, BackfillOptions, BackfillSummary, RateLimiter, version_key
from workers.core.errors import ConfigError, NotFound, TransientError
from workers.core.jobs import make_job_id, result_key
from workers.ops.ledger import Ledger, ledger_key

INBOX, RESULTS, STAGING, TOPIC = "inbox", "results", "staging", "jobs"


def _backfill(store, bus, run_id="run-1", **kw) -> Backfill:
    return Backfill(store, bus, INBOX, RESULTS, TOPIC, Ledger(store, STAGING, run_id=run_id, **kw),
                    ignore=(".DS_Store",))


def _run(store, bus, opts: BackfillOptions | None = None, **kw) -> BackfillSummary:
    opts = opts or BackfillOptions(rate=0)
    backfill = _backfill(store, bus, **kw)
    summary = BackfillSummary()
    return backfill.publish(backfill.plan(opts, summary), opts, summary)


def _result(store, name, generation, version="0.1.0"):
    store.write(RESULTS, result_key(name), stored_result(INBOX, name, generation, version=version),
                if_generation_match=None)


@pytest.fixture
def store():
    s = MemoryBlobStore()
    for i in range(10):
        s.put(INBOX, f"calls/{i}.wav", b"x" * 32_000)
    s.put(INBOX, "calls/.DS_Store", b"junk")
    s.put(INBOX, "calls/", b"")
    return s


def test_publishes_only_candidates_without_a_result_and_a_rerun_publishes_nothing(store):
    for i in range(4):
        _result(store, f"calls/{i}.wav", store.stat(INBOX, f"calls/{i}.wav").generation)
    bus = MemoryBus()
    first = _run(store, bus)
    assert (first.listed, first.ignored, first.done, first.published) == (12, 2, 4, 6)
    jobs = bus.on(TOPIC)
    assert sorted(j["name"] for j in jobs) == [f"calls/{i}.wav" for i in range(4, 10)]
    assert {j["source"] for j in jobs} == {"backfill"}
    assert all(j["job_id"] == make_job_id(INBOX, j["name"], j["generation"]) for j in jobs)
    marker = json.loads(store.read(STAGING, ledger_key(jobs[0]["job_id"]))[0])
    assert (marker["state"], marker["run_id"]) == ("published", "run-1")

    second = _run(store, bus)
    assert (second.in_flight, second.done, second.published) == (6, 4, 0)
    assert len(bus.on(TOPIC)) == 6


def test_a_reupload_is_published_again_and_force_republishes_everything(store):
    old = store.stat(INBOX, "calls/0.wav").generation
    _result(store, "calls/0.wav", old)
    store.put(INBOX, "calls/0.wav", b"new audio")
    summary = _run(store, MemoryBus())
    assert summary.reasons == {"new": 9, "re-upload": 1}

    bus = MemoryBus()
    forced = _run(store, bus, BackfillOptions(rate=0, force=True))
    assert forced.published == 10 and forced.reasons == {"forced": 10}


def test_reprocess_older_than_selects_results_of_older_versions_once(store):
    for i in range(10):
        _result(store, f"calls/{i}.wav", store.stat(INBOX, f"calls/{i}.wav").generation,
                version="0.9.0" if i < 3 else "0.10.0")
    assert _run(store, MemoryBus()).published == 0
    opts = BackfillOptions(rate=0, reprocess_older_than="0.10.0")
    bus = MemoryBus()
    assert _run(store, bus, opts).reasons == {"reprocess": 3}
    again = _run(store, bus, opts)
    assert (again.published, again.in_flight, again.done) == (0, 3, 7)
    # The redo lands (a newer result): the object counts as done again.
    _result(store, "calls/0.wav", store.stat(INBOX, "calls/0.wav").generation, version="0.10.0")
    assert _run(store, bus, opts).in_flight == 2


def test_a_reprocess_published_a_day_ago_whose_result_never_changed_is_sent_again(store):
    for i in range(10):
        _result(store, f"calls/{i}.wav", store.stat(INBOX, f"calls/{i}.wav").generation, version="0.9.0")
    opts = BackfillOptions(rate=0, reprocess_older_than="0.10.0")
    assert _run(store, MemoryBus(), opts).published == 10
    assert _run(store, MemoryBus(), opts).in_flight == 10  # within the day: still in flight
    info = store.stat(INBOX, "calls/2.wav")
    key = ledger_key(make_job_id(INBOX, info.name, info.generation))
    marker = json.loads(store.read(STAGING, key)[0])
    store.write(STAGING, key, json.dumps(dict(marker, at="2020-01-01T00:00:00Z")).encode(), if_generation_match=None)
    bus = MemoryBus()
    again = _run(store, bus, opts)
    assert [j["name"] for j in bus.on(TOPIC)] == ["calls/2.wav"] and again.reasons == {"retry": 1}


def test_two_overlapping_backfills_publish_each_job_exactly_once(store):
    for i in range(10, 200):
        store.put(INBOX, f"calls/{i}.wav", b"x")
    bus = MemoryBus()
    summaries = []
    opts = BackfillOptions(rate=0, concurrency=4)
    # Both plan before either publishes: the ledger's if-generation-match=0 settles every race.
    a, b = _backfill(store, bus, "run-a"), _backfill(store, bus, "run-b")
    plans = [(a, a.plan(opts, sa := BackfillSummary()), sa), (b, b.plan(opts, sb := BackfillSummary()), sb)]
    threads = [threading.Thread(target=lambda p=p: summaries.append(p[0].publish(p[1], opts, p[2]))) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    names = [j["name"] for j in bus.on(TOPIC)]
    assert len(names) == len(set(names)) == 200
    assert sum(s.published for s in summaries) == 200
    assert sum(s.claimed_elsewhere for s in summaries) == 200


class FlakyBus(MemoryBus):
    def __init__(self, fail_names):
        super().__init__()
        self.fail_names = set(fail_names)

    def publish(self, topic, message, attributes):
        if message["name"] in self.fail_names:
            raise TransientError("topic unavailable")
        return super().publish(topic, message, attributes)


def test_a_failed_publish_is_reported_and_retried_by_the_next_run(store):
    first = _run(store, FlakyBus({"calls/3.wav"}))
    assert first.published == 9 and len(first.errors) == 1 and "calls/3.wav" in first.errors[0]
    bus = MemoryBus()
    second = _run(store, bus)
    assert second.reasons == {"retry": 1} and [j["name"] for j in bus.on(TOPIC)] == ["calls/3.wav"]


def test_a_claim_left_by_a_dead_run_is_taken_over_only_once_stale(store):
    backfill = _backfill(store, MemoryBus())
    job_info = store.stat(INBOX, "calls/5.wav")
    from workers.core.jobs import make_job

    job = make_job(bucket=INBOX, name=job_info.name, generation=job_info.generation, size=1, content_type=None,
                   source="backfill")
    assert backfill.ledger.claim(job, if_generation_match=0) is not None  # then the run "dies"
    assert _run(store, MemoryBus()).in_flight == 1
    bus = MemoryBus()
    taken = _run(store, bus, stale_after=timedelta(seconds=-1))
    assert taken.reasons.get("retry") == 1 and "calls/5.wav" in [j["name"] for j in bus.on(TOPIC)]


def test_dry_run_plan_counts_bytes_audio_hours_and_gpu_time_without_publishing(store):
    bus, summary = MemoryBus(), BackfillSummary()
    backfill = _backfill(store, bus)
    selected = backfill.plan(BackfillOptions(glob="calls/[0-4].wav"), summary)
    assert len(selected) == 5 and summary.bytes == 5 * 32_000
    assert summary.audio_seconds_estimate == pytest.approx(5.0)  # 16-bit 16 kHz mono WAV
    text = "\n".join(summary.plan_lines(gpu_speed=10))
    assert "to publish: 5" in text and "160,000" in text and "estimated GPU time" in text
    assert bus.messages == [] and list(store.list(STAGING)) == []


def test_a_missing_bucket_is_a_clear_error():
    class NoBucket(MemoryBlobStore):
        def list(self, bucket, prefix=""):
            raise NotFound(f"bucket {bucket!r} does not exist")
            yield

    with pytest.raises(ConfigError, match="bucket 'inbox' does not exist"):
        _backfill(NoBucket(), MemoryBus()).plan(BackfillOptions(), BackfillSummary())


def test_rate_limiter_spaces_messages_and_options_are_checked():
    now, slept = [0.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.wait()
    assert now[0] == pytest.approx(1.0) and slept == pytest.approx([0.25] * 4)
    with pytest.raises(ConfigError):
        BackfillOptions(concurrency=0)


def test_versions_compare_as_release_numbers():
    assert version_key("0.9.0") < version_key("0.10.0") < version_key("1.0") < version_key("1.0.1")
    assert version_key("1.0") == version_key("1.0.0") == version_key("v1.0.0")
    assert version_key("1.0.0rc1") < version_key("1.0.0")
    assert version_key("") < version_key("0.0.1") and version_key("garbage!") < version_key("0.0.1")


class DeniedPublisher:
    """A Pub/Sub publisher client whose caller lacks pubsub.topics.publish."""

    def __init__(self):
        self.attempts = 0

    def topic_path(self, project, topic):
        return f"projects/{project}/topics/{topic}"

    def publish(self, path, data, **attributes):
        from google.api_core import exceptions as gexc

        self.attempts += 1
        raise gexc.PermissionDenied("User not authorized to perform this action.")


def test_a_permission_error_in_a_publish_thread_is_reported_and_stops_the_run(store):
    from workers.adapters.pubsub import PubSubBus

    publisher = DeniedPublisher()
    summary = _run(store, PubSubBus("p", publisher=publisher), BackfillOptions(rate=0, concurrency=1))
    assert summary.published == 0 and publisher.attempts == 1
    assert "no permission to publish" in summary.errors[0] and "stopped after a permission" in summary.errors[1]
    # The claim was released as failed, so the next run (with the permission fixed) sends all of them.
    again = _run(store, MemoryBus())
    assert again.published == 10 and again.reasons == {"new": 9, "retry": 1}


def test_an_unreadable_reprocess_threshold_is_refused():
    with pytest.raises(ConfigError, match="not a version"):
        BackfillOptions(reprocess_older_than="1.x")


def test_a_reprocess_whose_publish_failed_is_retried_by_the_next_run(store):
    for i in range(10):
        _result(store, f"calls/{i}.wav", store.stat(INBOX, f"calls/{i}.wav").generation, version="0.9.0")
    opts = BackfillOptions(rate=0, reprocess_older_than="0.10.0")
    first = _run(store, FlakyBus({"calls/4.wav"}), opts)
    assert first.published == 9 and len(first.errors) == 1
    bus = MemoryBus()
    second = _run(store, bus, opts)
    assert [j["name"] for j in bus.on(TOPIC)] == ["calls/4.wav"] and second.in_flight == 9
