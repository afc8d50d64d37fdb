"""Job identity, the candidate rule and where each record lives.

Pure Python with no heavy imports: the Cloud Function packages this module as it is, so
the trigger, the workers, the local runner and the backfill all agree on job ids and on
which objects become jobs.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from workers.core.contracts import JobMessage, PartialKind, Source
from workers.core.errors import InvalidMessage

RESULT_SUFFIX = ".json"
# GCS holds names of up to 1024 bytes; the result key adds RESULT_SUFFIX to the name.
MAX_NAME_BYTES = 1024 - len(RESULT_SUFFIX)
MAX_GENERATION = 2**63 - 1  # int64, as GCS stores it


def make_job_id(bucket: str, name: str, generation: int | str) -> str:
    """Stable id of one upload: the same (bucket, object, generation) always maps to it."""
    key = "\n".join((bucket, name, str(int(generation))))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def check_job(job: JobMessage) -> None:
    """Refuse a job that can never be processed; raises InvalidMessage.

    The id is recomputed, never trusted: a message whose ``job_id`` is not the hash of its
    (bucket, name, generation) would otherwise be deduplicated against, or stored under,
    another upload's partials and result.
    """
    if not job.bucket or not job.name:
        raise InvalidMessage("the job names no bucket or no object")
    try:
        job.bucket.encode("utf-8")
        name_bytes = len(job.name.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidMessage(f"the job's bucket or object name is not valid Unicode text: {e}") from e
    if name_bytes > MAX_NAME_BYTES:
        raise InvalidMessage(f"the object name is {name_bytes} bytes long; at most {MAX_NAME_BYTES} can get a result")
    if not 0 < job.generation <= MAX_GENERATION:
        raise InvalidMessage("the job's generation is not a positive 64-bit number")
    expected = make_job_id(job.bucket, job.name, job.generation)
    if job.job_id != expected:
        raise InvalidMessage(
            f"job id {job.job_id[:64]!r} is not the id of gs://{job.bucket}/{job.name[:200]} "
            f"generation {job.generation} ({expected}): refused"
        )


def skip_reason(name: str, *, prefix: str = "", ignore: Iterable[str] = ()) -> str | None:
    """Why an object is not a job, or None when it is a candidate.

    Folder markers, objects outside the configured prefix and ignored names are skipped.
    Everything else is a candidate, audio or not: a candidate that does not decode gets a
    failed result, so nothing vanishes without a trace.
    """
    if not name or name.endswith("/"):
        return "folder marker"
    if prefix and not name.startswith(prefix):
        return f"outside prefix {prefix!r}"
    base = name.rsplit("/", 1)[-1]
    for pattern in ignore:
        if fnmatch.fnmatchcase(base, pattern) or fnmatch.fnmatchcase(name, pattern):
            return f"matches ignore pattern {pattern!r}"
    return None


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_job(
    *,
    bucket: str,
    name: str,
    generation: int | str,
    size: int,
    content_type: str | None,
    source: Source,
    submitted_at: str | None = None,
) -> JobMessage:
    return JobMessage(
        job_id=make_job_id(bucket, name, generation),
        bucket=bucket,
        name=name,
        generation=int(generation),
        content_type=content_type or None,
        size=int(size),
        source=source,
        submitted_at=submitted_at or now_rfc3339(),
    )


PARTIAL_KINDS: tuple[PartialKind, ...] = ("stt", "ser")


def partial_key(job_id: str, kind: PartialKind) -> str:
    return f"{job_id}/{kind}.json"


def parse_partial_key(key: str) -> tuple[str, PartialKind] | None:
    """(job id, kind) of a partial's key, or None for any other object in the staging bucket."""
    job_id, slash, file = key.rpartition("/")
    for kind in PARTIAL_KINDS:
        if slash and "/" not in job_id and file == f"{kind}.json":
            return job_id, kind
    return None


def result_key(name: str) -> str:
    """Key of the merged result for an inbox object: the object name plus .json."""
    return name + RESULT_SUFFIX


@dataclass(frozen=True)
class Buckets:
    """The buckets one process works with (folders, in a local run)."""

    inbox: str
    staging: str
    results: str
