"""The three handlers, pure orchestration over the ports (no cloud client in sight).

``handle_job_stt`` / ``handle_job_ser``: download one job's audio, run one engine, store the
partial with if-generation-match=0 and announce it on the partials topic. ``handle_partial``:
once both partials exist, merge them and store the result, only if no result of this or a
newer source generation is there yet. Every step is safe to repeat: a redelivered job finds
its partial and only re-announces it; two racing joiners meet a generation precondition
and exactly one result is written. Bad input becomes a failed partial (PermanentError is
caught here and recorded); a message that cannot name its job, or whose job id is not the one
of the object it names, is refused before anything is read or written (InvalidMessage); anything
transient propagates so the caller retries.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, Mapping

from workers import PIPELINE_VERSION
from workers.audio import DecodedAudio, decode
from workers.contracts import (
    Error,
    JobMessage,
    PartialKind,
    PartialReady,
    Result,
    Sentiment,
    SerPartial,
    SpeakerTurn,
    SttPartial,
    Timing,
    dumps,
    loads,
    to_dict,
)
from workers import channels
from workers.engines.channels import classify_channels, transcribe_channels
from workers.engines.diarization import Diarizer, speech_regions
from workers.engines.ser import EmotionClassifier
from workers.engines.stt import SpeechToText
from workers.errors import NotFound, PermanentError, PreconditionFailed, TransientError
from workers.jobs import check_job, now_rfc3339, partial_key, result_key
from workers.join import merge
from workers.ports import BlobStore, Bus

log = logging.getLogger(__name__)

OutcomeStatus = Literal["done", "failed", "duplicate", "waiting", "superseded"]


@dataclass(frozen=True)
class Outcome:
    status: OutcomeStatus
    detail: str = ""


@dataclass
class Pipeline:
    store: BlobStore
    bus: Bus
    staging_bucket: str
    results_bucket: str
    partials_topic: str
    sentiment_map: Mapping[str, Sentiment]
    max_audio_seconds: float
    stt: SpeechToText | None = None
    ser: EmotionClassifier | None = None
    diarizer: Diarizer | None = None
    channel_mode: str = "auto"
    channel_names: tuple[str, ...] = ()
    clock: Callable[[], str] = now_rfc3339
    on_result: Callable[[Result], None] | None = field(default=None, repr=False)

    # --- STT and SER ----------------------------------------------------------------------
    def handle_job_stt(self, job: JobMessage) -> Outcome:
        if self.stt is None:
            raise RuntimeError("this process has no STT engine")
        engine = self.stt

        def run(audio: DecodedAudio) -> SttPartial:
            plan = channels.plan(audio, self.channel_mode, self.channel_names)
            t = transcribe_channels(engine, plan)
            # Whisper names a language even for silence or tones; with no speech there is none.
            language, probability = (t.language, t.language_probability) if t.segments else (None, None)
            return SttPartial(job.job_id, "ok", None, engine.engine, language, probability,
                              t.duration, t.segments, channels=plan.names, speech_coverage=t.coverage.share)

        def failed(error: Error) -> SttPartial:
            return SttPartial(job.job_id, "failed", error, engine.engine, None, None, None, [])

        return self._handle_job(job, "stt", run, failed)

    def handle_job_ser(self, job: JobMessage) -> Outcome:
        if self.ser is None:
            raise RuntimeError("this process has no SER engine")
        engine = self.ser

        def run(audio: DecodedAudio) -> SerPartial:
            plan = channels.plan(audio, self.channel_mode, self.channel_names)
            t = classify_channels(engine, plan)
            return SerPartial(job.job_id, "ok", None, engine.engine, t.window_seconds, t.hop_seconds, t.labels,
                              t.windows, t.duration, channels=plan.names, speakers=self._speakers(plan))

        def failed(error: Error) -> SerPartial:
            return SerPartial(job.job_id, "failed", error, engine.engine, 0.0, 0.0, [], [], None)

        return self._handle_job(job, "ser", run, failed)

    def _speakers(self, plan: channels.ChannelPlan) -> list[SpeakerTurn] | None:
        """Who speaks when: each channel's speech when channels are apart, else the diarizer's turns."""
        if plan.names is not None:
            return [SpeakerTurn(start, end, plan.names[c], c)
                    for c, signal in enumerate(plan.signals) for start, end in speech_regions(signal)]
        if self.diarizer is None:
            return None
        return [SpeakerTurn(t.start, t.end, t.speaker) for t in self.diarizer.turns(plan.signals[0])]

    def _handle_job(
        self,
        job: JobMessage,
        kind: PartialKind,
        run: Callable[[DecodedAudio], SttPartial | SerPartial],
        failed: Callable[[Error], SttPartial | SerPartial],
    ) -> Outcome:
        check_job(job)
        key = partial_key(job.job_id, kind)
        engine = (self.stt if kind == "stt" else self.ser).engine  # type: ignore[union-attr]
        match = 0
        try:
            data, generation = self.store.read(self.staging_bucket, key)
        except NotFound:
            pass
        else:
            stored = loads(_PARTIAL_TYPES[kind], data)
            if stored.engine == engine:
                self._announce(job, kind, stored.status, key)
                log.info("%s partial already stored; announced again", kind, extra={"job_id": job.job_id})
                return Outcome("duplicate", f"{kind} partial exists")
            # Made by another model or engine version: a reprocessing run redoes it.
            log.info("%s partial was made by %s; redoing it with %s", kind, stored.engine, engine,
                     extra={"job_id": job.job_id})
            match = generation

        started, t0 = self.clock(), time.perf_counter()
        try:
            audio = self._fetch_audio(job)
            partial = run(audio)
        except PermanentError as e:
            log.warning("%s failed permanently: %s", kind, e, extra={"job_id": job.job_id, "code": e.code})
            partial = failed(Error(e.code, e.message))
        timing = Timing(started, self.clock(), time.perf_counter() - t0)
        partial = _with_timing(partial, timing)
        try:
            self.store.write(self.staging_bucket, key, dumps(partial).encode(), if_generation_match=match)
        except PreconditionFailed:
            # Another delivery stored it first. Announce what is stored: that delivery may have
            # died before its own announcement, and the joiner ignores repeats.
            data, _ = self.store.read(self.staging_bucket, key)
            self._announce(job, kind, loads(_PARTIAL_TYPES[kind], data).status, key)
            log.info("%s partial written concurrently by another delivery; announced", kind,
                     extra={"job_id": job.job_id})
            return Outcome("duplicate", f"{kind} partial written concurrently")
        self._announce(job, kind, partial.status, key)
        log.info(
            "%s %s in %.2f s", kind, partial.status, timing.seconds, extra={"job_id": job.job_id}
        )
        return Outcome("done" if partial.status == "ok" else "failed", f"{kind} {partial.status}")

    def _fetch_audio(self, job: JobMessage) -> DecodedAudio:
        with tempfile.TemporaryDirectory(prefix="job-") as tmp:
            path = Path(tmp) / "audio"
            try:
                self.store.download(job.bucket, job.name, job.generation, path)
            except NotFound as e:  # the store's words: a gs:// URI, or what happened to a local path
                raise PermanentError(str(e), code="source_gone") from e
            return decode(path, max_seconds=self.max_audio_seconds, keep_channels=self.channel_mode != "mix")

    def _announce(self, job: JobMessage, kind: PartialKind, status: str, key: str) -> None:
        ready = PartialReady(job, kind, status, self.staging_bucket, key)  # type: ignore[arg-type]
        self.bus.publish(
            self.partials_topic,
            to_dict(ready),
            {"job_id": job.job_id, "kind": kind, "status": status},
        )

    # --- joiner ---------------------------------------------------------------------------
    def handle_partial(self, ready: PartialReady) -> Outcome:
        job = ready.job
        check_job(job)
        partials = {}
        for kind in ("stt", "ser"):
            key = partial_key(job.job_id, kind)
            try:
                data, _ = self.store.read(self.staging_bucket, key)
            except NotFound:
                log.info("waiting for the %s partial", kind, extra={"job_id": job.job_id})
                return Outcome("waiting", f"{kind} partial missing")
            partials[kind] = loads(_PARTIAL_TYPES[kind], data)
        result = merge(
            job,
            partials["stt"],
            partials["ser"],
            sentiment_map=self.sentiment_map,
            pipeline_version=PIPELINE_VERSION,
            completed_at=self.clock(),
        )
        return self._store_result(result)

    def _store_result(self, result: Result) -> Outcome:
        job = result.job
        key = result_key(job.name)
        body = (dumps(result) + "\n").encode()
        for _ in range(5):
            existing = self.store.stat(self.results_bucket, key)
            match = 0
            if existing is not None:
                stored = _stored_result(self.store, self.results_bucket, key)
                verdict = _compare_with_stored(result, stored)
                if verdict is not None:
                    log.info("result already stored (%s)", verdict, extra={"job_id": job.job_id})
                    return Outcome(verdict, f"result for generation {stored['job']['generation']} exists")
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


_PARTIAL_TYPES: dict[str, type] = {"stt": SttPartial, "ser": SerPartial}


def _with_timing(partial: SttPartial | SerPartial, timing: Timing) -> SttPartial | SerPartial:
    return replace(partial, timing=timing)


def _stored_result(store: BlobStore, bucket: str, key: str) -> dict | None:
    """The stored result as plain data; None when it is gone or unreadable (then it is replaced)."""
    try:
        data, _ = store.read(bucket, key)
        stored = json.loads(data)
        int(stored["job"]["generation"])
        return stored
    except NotFound:
        return None
    except (ValueError, KeyError, TypeError):
        log.warning("stored result %s is unreadable; it will be replaced", key)
        return None


def _compare_with_stored(result: Result, stored: dict | None) -> OutcomeStatus | None:
    """Why ``result`` must not replace ``stored`` ("duplicate"/"superseded"), or None to write it.

    A newer source generation always wins. For the same generation the stored result stays,
    unless the new one was made by other engines or another pipeline version *and* from
    partials at least as recent as the stored one's: that is a reprocessing run, and a late
    joiner holding older partials can never undo it.
    """
    if stored is None:
        return None
    stored_generation = int(stored["job"]["generation"])
    if stored_generation > result.job.generation:
        return "superseded"
    if stored_generation < result.job.generation:
        return None
    new = to_dict(result)
    if (new["engines"], new["pipeline_version"]) == (stored.get("engines"), stored.get("pipeline_version")):
        return "duplicate"
    for kind in ("stt", "ser"):
        mine = (new["timings"].get(kind) or {}).get("finished_at") or ""
        theirs = ((stored.get("timings") or {}).get(kind) or {}).get("finished_at") or ""
        if mine < theirs:
            return "duplicate"
    return None
