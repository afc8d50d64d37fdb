"""The handlers, pure orchestration over the ports (no cloud client in sight).

``JobHandler``: download one job's audio, run its worker (STT or SER, given at construction),
store the partial with if-generation-match=0 and announce it on the partials topic.
``Joiner``: once both partials exist, merge them and store the result, only if no result of
this or a newer source generation is there yet. Every step is safe to repeat: a redelivered
job finds its partial and only re-announces it; two racing joiners meet a generation
precondition and exactly one result is written. What to redo is decided on recorded inputs:
a partial made by another engine is made again, and a result is replaced for the same upload
only from the partials that are live now. Bad input becomes a failed partial (PermanentError
is caught here and recorded); a message that cannot name its job, or whose job id is not the
one of the object it names, is refused before anything is read or written (InvalidMessage);
anything transient propagates so the caller retries.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, Mapping, TypeVar

from workers import PIPELINE_VERSION
from workers.core.contracts import (
    Error,
    JobMessage,
    PartialKind,
    PartialReady,
    Result,
    Sentiment,
    SerPartial,
    StoredResult,
    Status,
    SttPartial,
    Timing,
    dumps,
    loads,
    to_dict,
)
from workers.core.errors import (SOURCE_GONE, ConfigError, NotFound, PermanentError, PreconditionFailed,
                                 TransientError)
from workers.core.jobs import check_job, now_rfc3339, partial_key, result_key
from workers.core.ports import BlobStore, Bus
from workers.processing.audio import DecodedAudio, decode
from workers.processing.join import merge
from workers.processing.worker import Worker

log = logging.getLogger(__name__)

OutcomeStatus = Literal["done", "failed", "duplicate", "waiting", "superseded"]
Partial = SttPartial | SerPartial
P = TypeVar("P", SttPartial, SerPartial)


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    detail: str = ""


@dataclass(frozen=True)
class Staging:
    """Where partials are stored and announced."""

    store: BlobStore
    bus: Bus
    bucket: str
    partials_topic: str


class SharedDecodes:
    """Decoded audio shared by the STT and SER handlers of one process (the local path runs both): the first handler
    to ask for a job's audio decodes it and the other takes the same arrays (read-only), so a file is decoded once.
    An entry goes when its last taker has it; at most ``keep`` are held, the oldest going first (a handler that finds
    its partial already stored never asks; a taker that comes after its entry went decodes again). A decode that
    fails fails both the same way."""

    def __init__(self, takers: int = 2, keep: int = 2) -> None:
        self.takers, self.keep = takers, keep
        self._lock = threading.Lock()
        self._entries: dict[tuple, _Decode] = {}

    def get(self, key: tuple, decode_it: Callable[[], DecodedAudio]) -> DecodedAudio:
        with self._lock:
            entry = self._entries.get(key)
            first = entry is None
            if entry is None:
                entry = self._entries[key] = _Decode()
                while len(self._entries) > self.keep:
                    self._entries.pop(next(iter(self._entries)))
        if first:
            try:
                entry.audio = _read_only(decode_it())
            except BaseException as e:  # noqa: BLE001 - handed to the other taker as it is, then raised here
                entry.error = e
            finally:
                entry.ready.set()
        entry.ready.wait()
        with self._lock:
            entry.taken += 1
            if entry.taken >= self.takers and self._entries.get(key) is entry:
                del self._entries[key]
        if entry.error is not None:
            raise entry.error
        assert entry.audio is not None
        return entry.audio


@dataclass
class _Decode:
    ready: threading.Event = field(default_factory=threading.Event)
    audio: DecodedAudio | None = None
    error: BaseException | None = None
    taken: int = 0


def _read_only(audio: DecodedAudio) -> DecodedAudio:
    for array in (audio.samples, *audio.channels):
        array.flags.writeable = False
    return audio


def analyse_file(worker: Worker, job: JobMessage, source: Path | Callable[[Path], None], *,
                 max_audio_seconds: float, clock: Callable[[], str] = now_rfc3339,
                 decodes: SharedDecodes | None = None) -> Partial:
    """The worker's partial, timed, for the audio at ``source``: a file, or a function that
    fetches it into the path it is given (a scratch file, deleted before inference). Bad audio,
    or a source that is gone, gives a failed partial. With ``decodes``, the job's audio is decoded once for every
    handler of the process that asks."""
    started, t0 = clock(), time.perf_counter()
    try:
        keep = worker.channels.keep_channels
        if decodes is None:
            audio = _decoded(source, max_audio_seconds, keep)
        else:
            key = (job.bucket, job.name, job.generation, max_audio_seconds, keep)
            audio = decodes.get(key, lambda: _decoded(source, max_audio_seconds, keep))
        partial = replace(worker.analyse(job.job_id, audio), decode_warnings=list(audio.warnings) or None)
    except PermanentError as e:
        log.warning("%s failed permanently: %s", worker.kind, e, extra={"job_id": job.job_id, "code": e.code})
        partial = worker.failed(job.job_id, Error(e.code, e.message))
    return replace(partial, timing=Timing(started, clock(), time.perf_counter() - t0))


def _decoded(source: Path | Callable[[Path], None], max_seconds: float, keep_channels: bool) -> DecodedAudio:
    if isinstance(source, Path):
        return decode(source, max_seconds=max_seconds, keep_channels=keep_channels)
    with tempfile.TemporaryDirectory(prefix="job-") as tmp:
        path = Path(tmp) / "audio"
        source(path)
        return decode(path, max_seconds=max_seconds, keep_channels=keep_channels)


@dataclass
class JobHandler:
    """One job in, one stored and announced partial out, for the worker it was built with."""

    worker: Worker
    staging: Staging
    max_audio_seconds: float
    clock: Callable[[], str] = now_rfc3339
    decodes: SharedDecodes | None = None  # the local path: one decode for both handlers

    @property
    def kind(self) -> PartialKind:
        return self.worker.kind

    def __call__(self, job: JobMessage) -> Outcome:
        check_job(job)
        kind, store, engine = self.kind, self.staging.store, self.worker.engine
        key = partial_key(job.job_id, kind)
        match = 0
        stored = self._stored(key)
        if stored is not None:
            partial, generation = stored
            if self.worker.made_alike(partial):
                self._announce(job, partial.status, key)
                log.info("%s partial already stored; announced again", kind, extra={"job_id": job.job_id})
                return Outcome("duplicate", f"{kind} partial exists")
            # Made by another model or engine version (or diarizer): a reprocessing run redoes it.
            log.info("%s partial was made by %s; redoing it with %s", kind, partial.engine, engine,
                     extra={"job_id": job.job_id})
            match = generation

        partial = self._analyse(job)
        try:
            store.write(self.staging.bucket, key, dumps(partial).encode(), if_generation_match=match)
        except PreconditionFailed:
            # Another delivery stored it first. Announce what is stored: that delivery may have
            # died before its own announcement, and the joiner ignores repeats.
            again = self._stored(key)
            if again is None:
                raise TransientError(f"{kind} partial {key} vanished after a write race; retry") from None
            self._announce(job, again[0].status, key)
            log.info("%s partial written concurrently by another delivery; announced", kind,
                     extra={"job_id": job.job_id})
            return Outcome("duplicate", f"{kind} partial written concurrently")
        self._announce(job, partial.status, key)
        seconds = partial.timing.seconds if partial.timing else 0.0
        log.info("%s %s in %.2f s", kind, partial.status, seconds, extra={"job_id": job.job_id})
        return Outcome("done" if partial.status == "ok" else "failed", f"{kind} {partial.status}")

    def _stored(self, key: str) -> tuple[Partial, int] | None:
        try:
            data, generation = self.staging.store.read(self.staging.bucket, key)
        except NotFound:
            return None
        return loads(self.worker.partial_type, data), generation

    def _analyse(self, job: JobMessage) -> Partial:
        def download(dest: Path) -> None:
            try:
                self.staging.store.download(job.bucket, job.name, job.generation, dest)
            except NotFound as e:  # the store's words: a gs:// URI, or what happened to a local path
                raise PermanentError(str(e), code=SOURCE_GONE) from e

        return analyse_file(self.worker, job, download, max_audio_seconds=self.max_audio_seconds, clock=self.clock,
                            decodes=self.decodes)

    def _announce(self, job: JobMessage, status: Status, key: str) -> None:
        ready = PartialReady(job, self.kind, status, self.staging.bucket, key)
        self.staging.bus.publish(self.staging.partials_topic, to_dict(ready),
                                 {"job_id": job.job_id, "kind": self.kind, "status": status})


@dataclass
class Joiner:
    """'Partial ready' in; once both partials are there, one merged result stored."""

    store: BlobStore
    staging_bucket: str
    results_bucket: str
    sentiment_map: Mapping[str, Sentiment]
    clock: Callable[[], str] = now_rfc3339
    on_result: Callable[[Result], None] | None = field(default=None, repr=False)

    def __call__(self, ready: PartialReady) -> Outcome:
        job = ready.job
        check_job(job)
        inputs: dict[str, int] = {}
        try:
            stt = self._read_partial(job, "stt", SttPartial, inputs)
            ser = self._read_partial(job, "ser", SerPartial, inputs)
        except NotFound as missing:
            log.info("waiting for the %s partial", missing, extra={"job_id": job.job_id})
            return Outcome("waiting", f"{missing} partial missing")
        result = merge(job, stt, ser, sentiment_map=self.sentiment_map, pipeline_version=PIPELINE_VERSION,
                       completed_at=self.clock())
        return self._store_result(result, inputs)

    def _read_partial(self, job: JobMessage, kind: PartialKind, cls: type[P], inputs: dict[str, int]) -> P:
        """The stored partial, its generation noted in ``inputs``; raises NotFound (naming the
        kind) while it is missing."""
        try:
            data, inputs[kind] = self.store.read(self.staging_bucket, partial_key(job.job_id, kind))
        except NotFound:
            raise NotFound(kind) from None
        return loads(cls, data)

    def _store_result(self, result: Result, inputs: Mapping[str, int]) -> Outcome:
        job = result.job
        key = result_key(job.name)
        body = (dumps(result) + "\n").encode()
        for _ in range(5):
            existing = self.store.stat(self.results_bucket, key)
            match = 0
            if existing is not None:
                stored = self._stored_result(key)
                verdict = self._verdict(result, inputs, stored)
                if verdict is not None:
                    assert stored is not None
                    log.info("result already stored (%s)", verdict, extra={"job_id": job.job_id})
                    return Outcome(verdict, f"result for generation {stored.job.generation} exists")
                match = existing.generation
            try:
                self.store.write(self.results_bucket, key, body, if_generation_match=match)
            except PreconditionFailed:
                continue
            log.info("result %s written to %s", result.status, key, extra={"job_id": job.job_id})
            if self.on_result is not None:
                self.on_result(result)
            return Outcome("done" if result.status == "ok" else "failed", key)
        raise TransientError(f"result {key} kept changing under us; retry later")

    def _stored_result(self, key: str) -> StoredResult | None:
        """The stored result; None when it is gone or unreadable (then it is replaced)."""
        try:
            return StoredResult.from_json(self.store.read(self.results_bucket, key)[0])
        except NotFound:
            return None
        except ValueError:
            log.warning("stored result %s is unreadable; it will be replaced", key)
            return None

    def _verdict(self, result: Result, inputs: Mapping[str, int], stored: StoredResult | None) -> OutcomeStatus | None:
        """Why ``result`` must not replace ``stored`` ("duplicate"/"superseded"), or None to write it.

        A result of audio that was read outranks one whose source was gone (``source_gone``),
        whatever their generations: a job naming a generation that never existed (a stale or
        forged message) only fills a gap, and neither blocks a real upload's result nor replaces
        it. Otherwise a newer source generation always wins. For the same generation the stored
        result stays,
        unless the new one was made by other engines or another pipeline version *and* from the
        partials that are live now: that is a reprocessing run, and a late joiner holding
        partials that have since been made again can never undo it.
        """
        if stored is None:
            return None
        if _source_gone(stored) != _source_gone(result):
            return None if _source_gone(stored) else "superseded"
        if stored.job.generation > result.job.generation:
            return "superseded"
        if stored.job.generation < result.job.generation:
            return None
        if (result.engines, result.pipeline_version) == (stored.engines, stored.pipeline_version):
            return "duplicate"
        for kind, generation in inputs.items():
            live = self.store.stat(self.staging_bucket, partial_key(result.job.job_id, kind))
            if live is None or live.generation != generation:
                return "duplicate"
        return None


def _source_gone(result: Result | StoredResult) -> bool:
    return result.error is not None and result.error.code == SOURCE_GONE


@dataclass
class Handlers:
    """The handlers one process serves: a service has one of them, the local stack all three."""

    stt: JobHandler | None = None
    ser: JobHandler | None = None
    joiner: Joiner | None = None

    def for_role(self, role: str) -> JobHandler | Joiner:
        handler = {"stt": self.stt, "ser": self.ser, "joiner": self.joiner}.get(role)
        if handler is None:
            raise ConfigError(f"this process was built without the {role} handler")
        return handler
