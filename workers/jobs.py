"""Job identity, the candidate rule and where each record lives.

Pure Python with no heavy imports: the Cloud Function packages this module as it is, so
the trigger, the workers, the local runner and the backfill all agree on job ids and on
which objects become jobs.
"""

from __future__ import annotations

import fnmatch
import hashlib
from datetime import datetime, timezone
from typing import Iterable

from workers.contracts import JobMessage, PartialKind, Source

RESULT_SUFFIX = ".json"


def make_job_id(bucket: str, name: str, generation: int | str) -> str:
    """Stable id of one upload: the same (bucket, object, generation) always maps to it."""
    key = "\n".join((bucket, name, str(int(generation))))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


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


def partial_key(job_id: str, kind: PartialKind) -> str:
    return f"{job_id}/{kind}.json"


def result_key(name: str) -> str:
    """Key of the merged result for an inbox object: the object name plus .json."""
    return name + RESULT_SUFFIX
