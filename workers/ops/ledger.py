"""The backfill's ledger: one marker per published job, in the staging bucket.

``ledger/<job_id>`` is written with if-generation-match=0 *before* the job is published
("claimed"), and rewritten as "published" once the bus has accepted it ("failed" when it
did not). So when two backfills overlap, exactly one of them claims each job and the other
skips it; a rerun skips every job that is claimed or published (in flight or done). A
failed publish is retried by the next run, and a claim that never turned into "published"
(the run died in between) is taken over once it is older than ``stale_after``. Markers are
small JSON objects, so ``status`` can show when and by which run a job was sent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from workers.core.contracts import JobMessage
from workers.core.errors import NotFound, PreconditionFailed
from workers.core.jobs import now_rfc3339
from workers.core.ports import BlobStore

log = logging.getLogger(__name__)

LEDGER_PREFIX = "ledger/"
MarkerState = Literal["claimed", "published", "failed"]


def ledger_key(job_id: str) -> str:
    return f"{LEDGER_PREFIX}{job_id}"


@dataclass(frozen=True)
class Marker:
    job_id: str
    state: MarkerState
    run_id: str
    at: str  # RFC 3339: when the state was written
    generation: int  # of the marker object itself (GCS generations grow with time)
    message_id: str = ""
    name: str = ""  # the inbox object

    def older_than(self, age: timedelta, now: datetime) -> bool:
        return datetime.fromisoformat(self.at.replace("Z", "+00:00")) < now - age


class Ledger:
    def __init__(self, store: BlobStore, bucket: str, *, run_id: str,
                 stale_after: timedelta = timedelta(minutes=15)) -> None:
        self.store = store
        self.bucket = bucket
        self.run_id = run_id
        self.stale_after = stale_after

    def generations(self) -> dict[str, int]:
        """job_id -> marker object generation, for every marker (one listing)."""
        return {info.name[len(LEDGER_PREFIX):]: info.generation for info in self.store.list(self.bucket, LEDGER_PREFIX)}

    def get(self, job_id: str) -> Marker | None:
        try:
            data, generation = self.store.read(self.bucket, ledger_key(job_id))
        except NotFound:
            return None
        try:
            body = json.loads(data)
            return Marker(job_id, body["state"], body.get("run_id", ""), body["at"], generation,
                          body.get("message_id", ""), body.get("name", ""))
        except (ValueError, KeyError, TypeError):
            log.warning("ledger marker %s is unreadable; treating it as a stale claim", job_id)
            return Marker(job_id, "claimed", "", "1970-01-01T00:00:00Z", generation)

    def abandoned(self, marker: Marker, now: datetime) -> bool:
        """A failed publish, or a claim whose run died before publishing: send it again."""
        return marker.state == "failed" or (marker.state == "claimed" and marker.older_than(self.stale_after, now))

    def claim(self, job: JobMessage, *, if_generation_match: int | None) -> int | None:
        """Claim ``job`` for this run: the new marker's generation, or None when another run got there first.

        ``if_generation_match`` is the marker generation this run decided to replace: 0 when it
        saw none, None to take it whatever it is (--force).
        """
        try:
            return self.store.write(self.bucket, ledger_key(job.job_id), self._body(job, "claimed"),
                                    if_generation_match=if_generation_match)
        except PreconditionFailed:
            return None

    def published(self, job: JobMessage, claim_generation: int, message_id: str) -> None:
        self._settle(job, claim_generation, "published", message_id)

    def release(self, job: JobMessage, claim_generation: int) -> None:
        self._settle(job, claim_generation, "failed")

    def _settle(self, job: JobMessage, claim_generation: int, state: MarkerState, message_id: str = "") -> None:
        try:
            self.store.write(self.bucket, ledger_key(job.job_id), self._body(job, state, message_id),
                             if_generation_match=claim_generation)
        except PreconditionFailed:
            log.warning("ledger marker %s changed under this run (a --force run?)", job.job_id)

    def _body(self, job: JobMessage, state: MarkerState, message_id: str = "") -> bytes:
        return json.dumps({
            "job_id": job.job_id, "bucket": job.bucket, "name": job.name, "generation": job.generation,
            "state": state, "run_id": self.run_id, "at": now_rfc3339(), "message_id": message_id,
        }, sort_keys=True).encode()
