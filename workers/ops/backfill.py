"""Bulk backfill: turn audio already in the inbox into job messages, once.

``plan`` lists the inbox (prefix, glob, update-time range), applies the shared candidate
rule, and keeps an object only when no result exists for its generation and no backfill
has already sent it (the ledger). ``publish`` then claims each job in the ledger
(if-generation-match=0), publishes it with source=backfill at a bounded rate and
concurrency, and marks it published. A rerun, or a second backfill running at the same
time, publishes nothing twice: done jobs have a result, jobs in flight have a marker.

``--force`` republishes whatever the rules selected regardless of results and markers;
``--reprocess-older-than VERSION`` also selects objects whose result was merged by an
older pipeline version (a marker newer than that result means the redo is in flight, until
it is a day old with the result unchanged: then it is sent again).
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Literal

from packaging.version import InvalidVersion, Version

from workers.ops.bq_load import updated_between
from workers.core.contracts import StoredResult, to_dict
from workers.core.errors import ConfigError, NotFound, PipelineError
from workers.core.jobs import make_job, result_key, skip_reason
from workers.ops.ledger import Ledger
from workers.core.ports import BlobInfo, BlobStore, Bus

log = logging.getLogger(__name__)

Reason = Literal["new", "re-upload", "reprocess", "forced", "retry"]

# Bytes per second of audio by file extension, for --dry-run estimates only: typical
# bit rates (16-bit 16 kHz mono WAV, 128 kbit/s MP3/AAC, 32 kbit/s Opus, FLAC ~60% of
# 44.1 kHz stereo PCM). Unknown types count as 128 kbit/s.
BYTES_PER_SECOND = {
    "wav": 32_000, "mp3": 16_000, "m4a": 16_000, "aac": 16_000, "mp4": 16_000, "ogg": 8_000,
    "opus": 4_000, "webm": 4_000, "flac": 106_000,
}
DEFAULT_BYTES_PER_SECOND = 16_000
# Seconds of audio one GPU processes per second of its time for one job (STT and SER
# together). An assumption to size a run; measure yours (bench/) and pass --gpu-speed.
DEFAULT_GPU_SPEED = 40.0
# A reprocessing message published this long ago whose result is still the old version was
# lost (dead-lettered, or met workers not yet upgraded): the next run sends it again. Harmless
# if it was not lost: the workers keep what the new version already made.
REDO_EXPIRES_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class BackfillOptions:
    prefix: str = ""
    glob: str = ""
    updated_since: datetime | None = None
    updated_until: datetime | None = None
    force: bool = False
    reprocess_older_than: str = ""
    rate: float = 50.0  # messages per second; 0 means no limit
    concurrency: int = 8
    limit: int = 0  # publish at most this many (0: all)

    def __post_init__(self) -> None:
        if self.rate < 0:
            raise ConfigError(f"--rate must be 0 (no limit) or positive, got {self.rate}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        if self.reprocess_older_than and version_key(self.reprocess_older_than)[0] == 0:
            raise ConfigError(f"--reprocess-older-than {self.reprocess_older_than!r} is not a version like 0.2.0")


@dataclass(frozen=True)
class Selected:
    info: BlobInfo
    reason: Reason
    ledger_match: int | None  # the marker generation to overwrite; 0: none; None: unconditional


@dataclass
class BackfillSummary:
    listed: int = 0
    ignored: int = 0
    outside_range: int = 0
    done: int = 0
    in_flight: int = 0
    selected: int = 0
    published: int = 0
    claimed_elsewhere: int = 0
    bytes: int = 0
    audio_seconds_estimate: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0

    def plan_lines(self, gpu_speed: float = DEFAULT_GPU_SPEED) -> list[str]:
        hours = self.audio_seconds_estimate / 3600
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.reasons.items())) or "none"
        return [
            f"inbox objects listed: {self.listed}   ignored by the candidate rule: {self.ignored}   "
            f"outside the time range: {self.outside_range}",
            f"already done: {self.done}   in flight (ledger): {self.in_flight}",
            f"to publish: {self.selected} ({reasons})",
            f"total bytes: {self.bytes:,} ({self.bytes / 1e9:.2f} GB)   estimated audio: {hours:.2f} h   "
            f"estimated GPU time: {hours / gpu_speed:.2f} h at {gpu_speed:g}x real time",
        ]

    def lines(self) -> list[str]:
        out = self.plan_lines()[:3] + [
            f"published: {self.published}   claimed by another run: {self.claimed_elsewhere}   "
            f"errors: {len(self.errors)}   in {self.seconds:.1f} s ({self.rate:.1f} messages/s)",
        ]
        return out + [f"  ERROR: {e}" for e in self.errors[:20]]


def version_key(version: str) -> tuple[int, Version]:
    """Order of pipeline versions (PEP 440: 0.9 < 0.10, 1.0 == 1.0.0, 1.0rc1 < 1.0, v1.2 == 1.2).

    An empty or unreadable version sorts before every real one, so results that do not say
    which version made them are reprocessed too.
    """
    try:
        return (1, Version(version.strip().removeprefix("v")))
    except InvalidVersion:
        return (0, Version("0"))


def estimate_audio_seconds(info: BlobInfo) -> float:
    ext = info.name.rsplit(".", 1)[-1].lower() if "." in info.name else ""
    return info.size / BYTES_PER_SECOND.get(ext, DEFAULT_BYTES_PER_SECOND)


class RateLimiter:
    """Spaces calls ``1/rate`` seconds apart (thread-safe); rate 0 never waits."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            self._sleep(at - now)


@dataclass
class Backfill:
    store: BlobStore
    bus: Bus
    inbox_bucket: str
    results_bucket: str
    jobs_topic: str
    ledger: Ledger
    inbox_prefix: str = ""
    ignore: tuple[str, ...] = ()

    # --- what to publish ---------------------------------------------------------------
    def plan(self, opts: BackfillOptions, summary: BackfillSummary) -> list[Selected]:
        prefix = opts.prefix or self.inbox_prefix
        candidates = []
        for info in self._list(self.inbox_bucket, prefix):
            summary.listed += 1
            if skip_reason(info.name, prefix=self.inbox_prefix, ignore=self.ignore) or (
                opts.glob and not fnmatch.fnmatchcase(info.name, opts.glob)
            ):
                summary.ignored += 1
            elif not updated_between(info.updated, opts.updated_since, opts.updated_until):
                summary.outside_range += 1
            else:
                candidates.append(info)
        results = {r.name: r for r in self._list(self.results_bucket, prefix)}
        markers = self.ledger.generations()
        with ThreadPoolExecutor(max_workers=opts.concurrency, thread_name_prefix="plan") as pool:
            decisions = list(pool.map(lambda i: self._decide(i, results.get(result_key(i.name)), markers, opts),
                                      candidates))
        selected = []
        for info, decision in zip(candidates, decisions):
            if decision == "done":
                summary.done += 1
            elif decision == "in flight":
                summary.in_flight += 1
            elif not opts.limit or len(selected) < opts.limit:
                selected.append(decision)
                summary.selected += 1
                summary.bytes += info.size
                summary.audio_seconds_estimate += estimate_audio_seconds(info)
                summary.reasons[decision.reason] = summary.reasons.get(decision.reason, 0) + 1
        return selected

    def _decide(self, info: BlobInfo, result: BlobInfo | None, markers: dict[str, int],
                opts: BackfillOptions) -> Selected | str:
        job_id = make_job(bucket=info.bucket, name=info.name, generation=info.generation, size=info.size,
                          content_type=info.content_type, source="backfill").job_id
        marker = markers.get(job_id, 0)
        if opts.force:
            return Selected(info, "forced", None)
        reason: Reason = "new"
        if result is not None:
            stored = self._stored(result)
            if stored is not None and stored[0] >= info.generation:
                if not (opts.reprocess_older_than
                        and version_key(stored[1]) < version_key(opts.reprocess_older_than)):
                    return "done"
                # The marker of the first run is older than the result; a newer one is this redo,
                # in flight unless its publish failed or its run died before publishing.
                if marker <= result.generation:
                    return Selected(info, "reprocess", marker)
                return self._retry_or_in_flight(info, job_id, published_expires=REDO_EXPIRES_AFTER)
            reason = "re-upload" if stored is not None else "new"
        if not marker:
            return Selected(info, reason, 0)
        return self._retry_or_in_flight(info, job_id)

    def _retry_or_in_flight(self, info: BlobInfo, job_id: str,
                            published_expires: timedelta | None = None) -> Selected | str:
        found, now = self.ledger.get(job_id), datetime.now(timezone.utc)
        if found is None:
            return "in flight"
        if self.ledger.abandoned(found, now) or (
            published_expires is not None and found.state == "published" and found.older_than(published_expires, now)
        ):
            return Selected(info, "retry", found.generation)
        return "in flight"

    def _stored(self, result: BlobInfo) -> tuple[int, str] | None:
        """(source generation, pipeline version) of a stored result; None when unreadable."""
        try:
            stored = StoredResult.from_json(self.store.read(result.bucket, result.name)[0])
            return stored.job.generation, stored.pipeline_version
        except NotFound:
            return None
        except ValueError:
            log.warning("result %s is unreadable; its object will be processed again", result.name)
            return None

    def _list(self, bucket: str, prefix: str) -> Iterable[BlobInfo]:
        try:
            yield from self.store.list(bucket, prefix)
        except NotFound as e:
            raise ConfigError(f"bucket {bucket!r} does not exist or is not reachable: {e}") from e

    # --- publishing --------------------------------------------------------------------
    def publish(self, selected: list[Selected], opts: BackfillOptions, summary: BackfillSummary,
                on_progress: Callable[[], None] = lambda: None) -> BackfillSummary:
        limiter = RateLimiter(opts.rate)
        slots = threading.BoundedSemaphore(opts.concurrency)
        lock = threading.Lock()
        started = time.perf_counter()

        denied = threading.Event()

        def send(item: Selected) -> None:
            try:
                outcome = self._send(item)
            except PipelineError as e:
                if isinstance(e, ConfigError):  # a missing grant: every other item would meet it too
                    denied.set()
                outcome = f"gs://{item.info.bucket}/{item.info.name}: {e}"
            except Exception as e:  # noqa: BLE001 - a worker thread: whatever fails must reach the summary
                outcome = f"gs://{item.info.bucket}/{item.info.name}: {type(e).__name__}: {e}"
            finally:
                slots.release()
            with lock:
                if outcome == "published":
                    summary.published += 1
                elif outcome == "claimed elsewhere":
                    summary.claimed_elsewhere += 1
                else:
                    summary.errors.append(outcome)
            on_progress()

        with ThreadPoolExecutor(max_workers=opts.concurrency, thread_name_prefix="backfill") as pool:
            for item in selected:
                slots.acquire()
                if denied.is_set():  # the same error awaits every other item: stop, a rerun resumes
                    slots.release()
                    with lock:
                        summary.errors.append(f"stopped after a permission or configuration error; "
                                              f"{len(selected) - summary.published} object(s) left for the next run")
                    break
                limiter.wait()
                pool.submit(send, item)
        summary.seconds = time.perf_counter() - started
        return summary

    def _send(self, item: Selected) -> str:
        info = item.info
        job = make_job(bucket=info.bucket, name=info.name, generation=info.generation, size=info.size,
                       content_type=info.content_type, source="backfill")
        claim = self.ledger.claim(job, if_generation_match=item.ledger_match)
        if claim is None:
            return "claimed elsewhere"
        try:
            message_id = self.bus.publish(self.jobs_topic, to_dict(job), {
                "job_id": job.job_id, "bucket": job.bucket, "name": job.name, "generation": str(job.generation),
                "source": job.source, "reason": item.reason,
            })
        except Exception:
            try:
                self.ledger.release(job, claim)
            except Exception as e:  # noqa: BLE001 - the publish error is the one to report
                log.warning("could not mark %s failed (%s); the next run takes its claim over once stale",
                            info.name, e, extra={"job_id": job.job_id})
            raise
        self.ledger.published(job, claim, message_id)
        log.info("published %s (%s)", info.name, item.reason, extra={"job_id": job.job_id})
        return "published"
