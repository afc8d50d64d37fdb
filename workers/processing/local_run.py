"""The local runner: a folder of audio in, one merged JSON per file out.

It goes through the same path as the cloud: the candidate rule picks objects, each becomes
a job message on the (in-process) jobs topic, STT and SER handle it concurrently, and the
joiner writes the result. ``jobs`` files are in flight at once (STT and SER of each too), in
waves: every engine is loaded once per process and shared, and a file's result is the same
however many run beside it. Files whose result already exists for the same generation are
skipped, so a rerun only does what is new or changed. What cannot become a job here (a name
the results folder cannot hold, a dangling symlink, a folder that cannot be listed) is
counted and named in the summary, and the run goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Callable
from dataclasses import dataclass, field

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from workers.adapters.local import name_problem, shown
from workers.processing.local_stack import LocalStack
from workers.core.contracts import Result, StoredResult, loads, to_dict
from workers.core.errors import NotFound
from workers.core.jobs import PARTIAL_KINDS, make_job, now_rfc3339, partial_key, result_key, skip_reason
from workers.core.ports import BlobInfo
from workers.core.settings import InputSettings

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    ok: int = 0
    failed: int = 0
    already_done: int = 0
    done_but_failed: list[tuple[str, str]] = field(default_factory=list)  # failed results of earlier runs
    ignored: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, why) of what cannot become a job
    partly_decoded: list[tuple[str, str]] = field(default_factory=list)  # (name, what was lost)
    errors: list[str] = field(default_factory=list)
    audio_seconds: float = 0.0  # transcribed in this run
    reused_seconds: float = 0.0  # of files whose partials an interrupted earlier run had made
    started_at: str = ""
    wall_seconds: float = 0.0
    ser_trained: bool | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)

    jobs: int = 1  # files in flight at once
    file_seconds: list[float] = field(default_factory=list)  # wall time of each file processed, in order

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def files_per_second(self) -> float:
        return len(self.file_seconds) / self.wall_seconds if self.wall_seconds else 0.0

    def lines(self) -> list[str]:
        out = [
            f"files ok: {self.ok}   failed: {self.failed}   already done: {self.already_done}"
            + (f" ({len(self.done_but_failed)} of them failed)" if self.done_but_failed else "")
            + f"   ignored: {self.ignored}"
            + (f"   skipped: {len(self.skipped)}" if self.skipped else "")
            + (f"   decoded in part: {len(self.partly_decoded)}" if self.partly_decoded else ""),
            f"audio: {self.audio_seconds:.1f} s   wall: {self.wall_seconds:.1f} s   "
            f"real-time factor: {self.realtime_factor:.1f}x"
            + (f"   (+{self.reused_seconds:.1f} s merged from an earlier run's partials)"
               if self.reused_seconds else ""),
        ]
        if self.file_seconds:
            out.append(f"throughput: {self.files_per_second:.2f} files/s with {self.jobs} "
                       f"{'job' if self.jobs == 1 else 'jobs'} at once")
        out += [f"  failed: {name}: {why}" for name, why in self.failures]
        out += [f"  decoded in part: {name}: {lost}" for name, lost in self.partly_decoded]
        out += [f"  skipped: {name}: {why}" for name, why in self.skipped]
        out += [f"  failed in an earlier run: {name}: {why} (--force redoes it)" for name, why in self.done_but_failed]
        out += [f"  ERROR: {e}" for e in self.errors]
        if self.ser_trained is False:
            out.append(
                "NOTE: the emotion model is untrained (random weights): emotions are placeholders. Leave "
                "SER_MODEL empty for the trained default, or point it at a trained model."
            )
        return out


def candidates(stack: LocalStack, rules: InputSettings, summary: RunSummary) -> list[BlobInfo]:
    found = []
    for info in stack.store.list(stack.inbox_bucket):
        reason = skip_reason(info.name, prefix=rules.inbox_prefix, ignore=rules.ignore_globs)
        if reason:
            log.info("skipping %s: %s", shown(info.name), reason)
            summary.ignored += 1
        elif (problem := name_problem(result_key(info.name))) is not None:
            log.warning("skipping %s: %s", shown(info.name), problem)
            summary.skipped.append((shown(info.name), problem))
        else:
            found.append(info)
    summary.skipped += stack.store.unlisted(stack.inbox_bucket)
    return found


def default_jobs(cores: int | None = None, memory_bytes: int | None = None) -> int:
    """Files at once on this machine: one per 2 cores (STT and SER of a file take one core each
    and run at once), one per 2 GiB of memory (Whisper base and the emotion encoder share it,
    and each file in flight holds its own decoder state), at most 8."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(1, min(8, cores // 2, int(memory_bytes // 2**31)))


def run_folder(stack: LocalStack, rules: InputSettings, *, force: bool = False, progress: bool = True,
               jobs: int = 1, on_result: Callable[[str, Result], None] | None = None) -> RunSummary:
    """Every candidate of the inbox without a result of its generation, ``jobs`` at a time; ``on_result`` gets each
    result made (the object name and the result), as it is made."""
    summary = RunSummary(started_at=now_rfc3339(), jobs=max(1, jobs))
    started = time.perf_counter()
    for bucket in (stack.buckets.results, stack.buckets.staging):
        stack.store.sweep_temp_files(bucket)
    todo = []
    for info in candidates(stack, rules, summary):
        done = None if force else _stored_result(stack, info.name)
        if done is not None and done.job.generation == info.generation:
            summary.already_done += 1
            if done.status != "ok":
                summary.done_but_failed.append((info.name, done.why_failed))
        else:
            todo.append(info)
    # A bar only on a terminal; the per-file lines go wherever stderr goes.
    bar = tqdm(total=len(todo), unit="file", disable=not (progress and sys.stderr.isatty()), dynamic_ncols=True)
    with logging_redirect_tqdm():
        for start in range(0, len(todo), summary.jobs):
            wave = todo[start : start + summary.jobs]
            bar.set_postfix_str(_short(wave[0].name))
            for info, result in zip(wave, process_together(stack, wave, summary, force=force)):
                bar.update(1)
                if result is not None and on_result is not None:
                    on_result(info.name, result)
                if progress and result is not None:
                    bar.write(describe(result))
    bar.close()
    summary.wall_seconds = time.perf_counter() - started
    summary.ser_trained = stack.handlers.ser.worker.engine.trained if stack.handlers.ser else None
    return summary


def process_one(stack: LocalStack, info: BlobInfo, summary: RunSummary, *, force: bool = False) -> Result | None:
    """Publish one job, wait for the handlers, and return the stored result."""
    return process_together(stack, [info], summary, force=force)[0]


def process_together(stack: LocalStack, infos: list[BlobInfo], summary: RunSummary, *,
                     force: bool = False) -> list[Result | None]:
    """Publish a job for each of ``infos`` at once, wait for the handlers of all, and return
    their stored results, in order."""
    jobs = [make_job(bucket=stack.inbox_bucket, name=info.name, generation=info.generation, size=info.size,
                     content_type=info.content_type, source="upload") for info in infos]
    if force:
        for job, info in zip(jobs, infos):
            _forget(stack, job.job_id, info.name)
    dead_before = len(stack.bus.dead_letters)
    started = time.perf_counter()
    for job in jobs:
        stack.bus.publish(stack.jobs_topic, to_dict(job), {"job_id": job.job_id})
    stack.bus.drain()
    seconds = (time.perf_counter() - started) / len(jobs)
    for topic, handler, payload, error in stack.bus.dead_letters[dead_before:]:
        summary.errors.append(f"{_job_name(payload)}: {handler} on {topic}: {error}")
    out = []
    for info in infos:
        summary.file_seconds.append(seconds)
        out.append(_collected(stack, info, summary))
    return out


def _job_name(payload: dict) -> str:
    """The object name of a job or partial-ready message."""
    return str(payload.get("name") or payload.get("job", {}).get("name", "?"))


def _collected(stack: LocalStack, info: BlobInfo, summary: RunSummary) -> Result | None:
    """The stored result of ``info``, counted in ``summary``."""
    try:
        data, _ = stack.store.read(stack.buckets.results, result_key(info.name))
    except NotFound:
        summary.errors.append(f"{info.name}: no result was written")
        return None
    result = loads(Result, data)
    if result.decode_warnings:
        summary.partly_decoded.append((info.name, "; ".join(result.decode_warnings)))
    if result.status == "ok":
        summary.ok += 1
    else:
        summary.failed += 1
        summary.failures.append((info.name, why_failed(result)))
    duration = result.duration or 0.0
    stt_started = result.timings.stt.started_at if result.timings.stt else ""
    if summary.started_at and stt_started and stt_started < summary.started_at:
        summary.reused_seconds += duration
    else:
        summary.audio_seconds += duration
    return result


def describe(result: Result) -> str:
    """One human line per processed file."""
    name = result.job.name
    if result.status != "ok":
        return f"FAILED {name}: {why_failed(result)}"
    emotion = (result.summary.dominant_emotion if result.summary else None) or "-"
    if not result.engines.ser.trained:
        emotion += " (untrained model)"
    who = f", speakers {', '.join(s.speaker for s in result.speakers)}" if result.speakers else ""
    return (f"ok     {name}: {result.duration or 0.0:.1f} s, language {result.language or '- (no speech)'}, "
            f"{len(result.segments)} segments{who}, dominant emotion {emotion}")


def why_failed(result: Result) -> str:
    return result.error.text if result.error else "failed"


def _stored_result(stack: LocalStack, name: str) -> StoredResult | None:
    try:
        return StoredResult.from_json(stack.store.read(stack.buckets.results, result_key(name))[0])
    except (NotFound, ValueError):
        return None


def _forget(stack: LocalStack, job_id: str, name: str) -> None:
    """--force: drop this job's partials and result so it is recomputed."""
    for kind in PARTIAL_KINDS:
        stack.store.delete(stack.buckets.staging, partial_key(job_id, kind))
    stack.store.delete(stack.buckets.results, result_key(name))


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]
