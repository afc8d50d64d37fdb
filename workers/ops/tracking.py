"""Operations over the stores and the bus: where one upload stands, redrive, stuck jobs.

``upload_status`` follows one object through every place the pipeline writes: the inbox
generation, the backfill ledger, the two partials in the staging bucket, the result, and
the dead-letter subscriptions (pulled without acknowledging, then handed straight back).
``redrive`` pulls what sits in dead-letter subscriptions, republishes each message to the
topic it came from (a job message to the jobs topic, a "partial ready" to the partials
topic) and only then acknowledges it. ``stuck_jobs`` reports jobs with exactly one partial
older than a threshold (from the staging bucket alone); ``unfinished_jobs`` every upload older
than a threshold with no result of its generation, whatever its partials: nothing retries them
once their messages are dead-lettered or dropped, and ``republish_stuck`` heals both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterator

from workers.core.contracts import PartialKind, StoredPartial, StoredResult, to_dict
from workers.core.errors import SOURCE_GONE, NotFound
from workers.core.jobs import (
    PARTIAL_KINDS, make_job, make_job_id, parse_partial_key, partial_key, result_key, skip_reason,
)
from workers.core.ports import BlobStore, Bus, DeadLetter, DeadLetterQueue
from workers.ops.ledger import Ledger

log = logging.getLogger(__name__)

# Attributes Pub/Sub adds when it dead-letters a message; not carried over on redrive.
DEAD_LETTER_ATTRIBUTE_PREFIX = "CloudPubSubDeadLetter"
# Pub/Sub may answer a pull with nothing while messages wait: only this many empty pulls in a
# row, a short pause apart, count as "the subscription is empty".
EMPTY_PULLS = 3
EMPTY_PULL_PAUSE_SECONDS = 0.3


# --- status -------------------------------------------------------------------------------

@dataclass
class UploadStatus:
    bucket: str
    name: str
    generation: int | None = None
    job_id: str | None = None
    ledger: str | None = None
    stt: str | None = None
    ser: str | None = None
    result: str | None = None
    result_error: str | None = None
    result_generation: int | None = None
    dead_lettered: list[str] = field(default_factory=list)

    @property
    def stage(self) -> str:
        if self.generation is None:
            return "not in the inbox"
        # A source_gone result (its generation was never there, or is gone) outranks no upload.
        gone = (self.result_error or "").startswith(f"{SOURCE_GONE}:")
        if self.result_generation is not None and self.result_generation > self.generation and not gone:
            return "superseded by a newer upload's result"
        if self.result is not None and self.result_generation == self.generation:
            return f"result {self.result}"
        if self.dead_lettered:
            return "dead-lettered"
        if self.stt and self.ser:
            return "STT and SER done, waiting for the joiner"
        if self.stt:
            return "STT done, SER pending"
        if self.ser:
            return "SER done, STT pending"
        if self.ledger:
            return f"queued by a backfill ({self.ledger})"
        return "queued, or not picked up (no partial, no result, no backfill marker)"

    def lines(self) -> list[str]:
        rows = [
            # A local store's buckets are folders: show a path there, a gs:// URI otherwise.
            ("object", (f"{self.bucket}/{self.name}" if self.bucket.startswith("/") else
                        f"gs://{self.bucket}/{self.name}") + (f"#{self.generation}" if self.generation else "")),
            ("job_id", self.job_id or "-"),
            ("stage", self.stage),
            ("backfill ledger", self.ledger or "-"),
            ("STT partial", self.stt or "-"),
            ("SER partial", self.ser or "-"),
            ("result", "-" if self.result is None else f"{self.result} (source generation {self.result_generation})"
             + (f": {self.result_error}" if self.result_error else "")),
            ("dead letters", ", ".join(self.dead_lettered) or "none seen"),
        ]
        return [f"{k:>16}: {v}" for k, v in rows]


def upload_status(store: BlobStore, *, bucket: str, name: str, staging_bucket: str, results_bucket: str,
                  ledger: Ledger | None = None, dead_letters: DeadLetterQueue | None = None,
                  dead_letter_subscriptions: tuple[str, ...] = (), peek_limit: int = 1000) -> UploadStatus:
    status = UploadStatus(bucket, name)
    info = store.stat(bucket, name)
    if info is not None:
        status.generation = info.generation
        status.job_id = make_job_id(bucket, name, info.generation)
        if ledger is not None:
            marker = ledger.get(status.job_id)
            if marker is not None:
                status.ledger = f"{marker.state} at {marker.at} by run {marker.run_id or '?'}"
        status.stt = _partial(store, staging_bucket, status.job_id, "stt")
        status.ser = _partial(store, staging_bucket, status.job_id, "ser")
    try:
        stored = StoredResult.from_json(store.read(results_bucket, result_key(name))[0])
        status.result, status.result_generation = stored.status, stored.job.generation
        if stored.error:
            status.result_error = stored.why_failed
    except NotFound:
        pass
    except ValueError:
        status.result = "unreadable"
    if dead_letters is not None and status.job_id:
        for sub in dead_letter_subscriptions:
            if any(_job_id_of(m) == status.job_id for m in peek(dead_letters, sub, peek_limit)):
                status.dead_lettered.append(sub)
    return status


def _partial(store: BlobStore, bucket: str, job_id: str, kind: PartialKind) -> str | None:
    try:
        data, _ = store.read(bucket, partial_key(job_id, kind))
    except NotFound:
        return None
    try:
        partial = StoredPartial.from_json(data)
    except ValueError:
        return "unreadable"
    error = partial.error
    return partial.status + (f" ({error.text})" if error else "")


def _job_id_of(message: DeadLetter) -> str | None:
    if message.attributes.get("job_id"):
        return message.attributes["job_id"]
    body = message.json() or {}
    return body.get("job_id") or (body.get("job") or {}).get("job_id")


def batches(queue: DeadLetterQueue, subscription: str, limit: int) -> Iterator[list[DeadLetter]]:
    """Batches of up to 100 until ``limit`` messages, or until EMPTY_PULLS pulls in a row came
    back empty: a single empty pull does not prove a subscription empty."""
    got, empties = 0, 0
    while got < limit:
        batch = queue.pull(subscription, min(100, limit - got))
        if not batch:
            empties += 1
            if empties >= EMPTY_PULLS:
                return
            time.sleep(EMPTY_PULL_PAUSE_SECONDS)
            continue
        empties = 0
        got += len(batch)
        yield batch


def peek(queue: DeadLetterQueue, subscription: str, limit: int) -> list[DeadLetter]:
    """Read up to ``limit`` dead letters and hand them all back (nothing is acknowledged)."""
    seen: list[DeadLetter] = []
    try:
        for batch in batches(queue, subscription, limit):
            seen += batch
    finally:
        if seen:
            queue.nack(subscription, [m.ack_id for m in seen])
    return seen


# --- redrive ------------------------------------------------------------------------------

@dataclass
class RedriveSummary:
    republished: dict[str, int] = field(default_factory=dict)
    unreadable: int = 0

    def lines(self) -> list[str]:
        per_topic = ", ".join(f"{t}: {n}" for t, n in sorted(self.republished.items())) or "nothing"
        out = [f"republished: {per_topic}"]
        if self.unreadable:
            out.append(f"left in place (not a job or partial-ready message): {self.unreadable}")
        return out


def target_topic(message: DeadLetter, *, jobs_topic: str, partials_topic: str) -> str | None:
    """The topic a dead letter came from, told by its shape: a job message or a "partial ready"."""
    body = message.json()
    if body is None:
        return None
    if "kind" in body and "staging_key" in body:
        return partials_topic
    if "job_id" in body and "generation" in body:
        return jobs_topic
    return None


def redrive(queue: DeadLetterQueue, bus: Bus, subscriptions: tuple[str, ...], *, jobs_topic: str,
            partials_topic: str, limit: int = 10_000, dry_run: bool = False) -> RedriveSummary:
    summary = RedriveSummary()
    for sub in subscriptions:
        # What stays (unplaceable, or everything in a dry run) is held until the end of this
        # subscription and only then handed back, so a later pull cannot return it again.
        kept: list[str] = []
        try:
            for batch in batches(queue, sub, limit):
                done: list[str] = []
                try:
                    for message in batch:
                        topic = target_topic(message, jobs_topic=jobs_topic, partials_topic=partials_topic)
                        if topic is None:
                            summary.unreadable += 1
                            kept.append(message.ack_id)
                            continue
                        if dry_run:
                            summary.republished[topic] = summary.republished.get(topic, 0) + 1
                            kept.append(message.ack_id)
                            continue
                        attributes = {k: v for k, v in message.attributes.items()
                                      if not k.startswith(DEAD_LETTER_ATTRIBUTE_PREFIX)}
                        bus.publish(topic, message.json(), dict(attributes, redriven_from=sub))
                        summary.republished[topic] = summary.republished.get(topic, 0) + 1
                        done.append(message.ack_id)
                finally:
                    # What was republished leaves the dead-letter subscription even if a later
                    # publish of the batch fails; the rest is redelivered there as it was.
                    if done:
                        queue.ack(sub, done)
        finally:
            if kept:
                queue.nack(sub, kept)
    return summary


# --- stuck jobs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class StuckJob:
    job_id: str
    present: str  # the partial that exists
    missing: str
    age: timedelta
    name: str | None  # from the backfill ledger, when the job went through one


def stuck_jobs(store: BlobStore, staging_bucket: str, older_than: timedelta, *, ledger: Ledger | None = None,
               now: datetime | None = None) -> list[StuckJob]:
    """Jobs with exactly one partial, written more than ``older_than`` ago."""
    now = now or datetime.now(timezone.utc)
    partials: dict[str, dict[str, str | None]] = {}
    for info in store.list(staging_bucket):
        parsed = parse_partial_key(info.name)
        if parsed is not None:
            job_id, kind = parsed
            partials.setdefault(job_id, {})[kind] = info.updated
    found = []
    for job_id, kinds in sorted(partials.items()):
        if len(kinds) != 1:
            continue
        (kind, updated), = kinds.items()
        if not updated:
            continue
        age = now - datetime.fromisoformat(updated.replace("Z", "+00:00"))
        if age > older_than:
            marker = ledger.get(job_id) if ledger is not None else None
            found.append(StuckJob(job_id, kind, "ser" if kind == "stt" else "stt", age,
                                  marker.name if marker else None))
    return found


def unfinished_jobs(store: BlobStore, *, inbox_bucket: str, staging_bucket: str, results_bucket: str,
                    older_than: timedelta, inbox_prefix: str = "", ignore: tuple[str, ...] = (),
                    now: datetime | None = None) -> list[StuckJob]:
    """Uploads older than ``older_than`` with no result written since, whatever their partials:
    none (the job message was never handled, or both engines' writes failed until it was
    dropped), one (the other engine never finished) or both (the joiner's writes failed until
    the "partial ready" messages were dropped). Each heals by its job message sent again."""
    now = now or datetime.now(timezone.utc)
    partials: dict[str, set[str]] = {}
    for info in store.list(staging_bucket):
        if (parsed := parse_partial_key(info.name)) is not None:
            partials.setdefault(parsed[0], set()).add(parsed[1])
    found = []
    for info in store.list(inbox_bucket, inbox_prefix):
        if skip_reason(info.name, prefix=inbox_prefix, ignore=ignore) or not info.updated:
            continue
        uploaded = _time(info.updated)
        if now - uploaded <= older_than:
            continue
        result = store.stat(results_bucket, result_key(info.name))
        if result is not None and result.updated and _time(result.updated) >= uploaded:
            continue
        job_id = make_job_id(info.bucket, info.name, info.generation)
        have = [kind for kind in PARTIAL_KINDS if kind in partials.get(job_id, ())]
        missing = [kind for kind in PARTIAL_KINDS if kind not in have] or ["the result"]
        found.append(StuckJob(job_id, " and ".join(have) or "nothing", " and ".join(missing), now - uploaded,
                              info.name))
    return found


def jobs_to_heal(store: BlobStore, staging_bucket: str, older_than: timedelta, *, inbox_bucket: str = "",
                 results_bucket: str = "", inbox_prefix: str = "", ignore: tuple[str, ...] = (),
                 ledger: Ledger | None = None, now: datetime | None = None) -> list[StuckJob]:
    """What the healer sends again: stuck jobs from the staging bucket and, when the inbox and
    results buckets are known, every unfinished upload; each job once."""
    found = {job.job_id: job for job in stuck_jobs(store, staging_bucket, older_than, ledger=ledger, now=now)}
    if inbox_bucket and results_bucket:
        found.update((job.job_id, job) for job in unfinished_jobs(
            store, inbox_bucket=inbox_bucket, staging_bucket=staging_bucket, results_bucket=results_bucket,
            older_than=older_than, inbox_prefix=inbox_prefix, ignore=ignore, now=now))
    return sorted(found.values(), key=lambda job: job.job_id)


def _time(rfc3339: str) -> datetime:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))


def republish_stuck(store: BlobStore, bus: Bus, stuck: list[StuckJob], *, inbox_bucket: str, jobs_topic: str,
                    inbox_prefix: str = "") -> list[str]:
    """Send each stuck job's message to the jobs topic again; the ids sent.

    Safe to repeat, and what heals a job whose messages were dead-lettered or lost at any step:
    an engine that finished finds its partial and announces it again (no inference), one that
    did not makes its partial, and the joiner, announced to again, merges. A partial names only its
    job id, so the jobs are found by listing the inbox; a job whose object was replaced or deleted
    is not sent (the newer upload has a job of its own).
    """
    wanted = {job.job_id for job in stuck}
    sent = []
    for info in store.list(inbox_bucket, inbox_prefix):
        job = make_job(bucket=info.bucket, name=info.name, generation=info.generation, size=info.size,
                       content_type=info.content_type, source="backfill")
        if job.job_id in wanted:
            bus.publish(jobs_topic, to_dict(job), {"job_id": job.job_id})
            log.info("republished stuck job for %s", info.name, extra={"job_id": job.job_id})
            sent.append(job.job_id)
    return sent
