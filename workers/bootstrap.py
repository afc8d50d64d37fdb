"""The one composition root: settings in, engines and adapters wired into a Pipeline out.

Models load once per process: ``stt_engine``/``ser_engine`` cache what they built.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from workers import logs
from workers.adapters.local import LocalBlobStore, LocalBus
from workers.contracts import JobMessage, PartialReady, from_dict
from workers.engines.ser import EmotionClassifier, TransformersEmotionEngine
from workers.engines.ser_whisper import WhisperHeadEmotionEngine
from workers.engines.diarization import SpeakerDiarizer
from workers.engines.stt import FasterWhisperEngine, OpenAIWhisperEngine, SpeechToText
from workers.handlers import Pipeline
from workers.join import parse_sentiment_map
from workers.settings import Settings

log = logging.getLogger(__name__)

LOCAL_STAGING = "staging"
LOCAL_RESULTS = "results"
LOCAL_STAGING_DIR = ".staging"  # inside the results folder, unless the local stack is given another


def configure_logging(settings: Settings, *, default_level: str | None = None) -> None:
    on_cloud_run = bool(os.environ.get("K_SERVICE") or os.environ.get("CLOUD_RUN_JOB"))
    json_lines = settings.log_format == "json" or (settings.log_format == "auto" and on_cloud_run)
    logs.configure(json_lines=json_lines, level=default_level or settings.log_level)


def _set_torch_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)


@functools.lru_cache(maxsize=4)
def _stt(engine: str, path: str, device: str, compute_type: str, batch: int, beam: int, language: str,
         threads: int, max_seconds: float, block_seconds: float) -> SpeechToText:
    if engine == "openai-whisper":
        _set_torch_threads(threads)
        return OpenAIWhisperEngine(Path(path), device=device, beam_size=beam, language=language,
                                   segment_max_seconds=max_seconds)
    return FasterWhisperEngine(Path(path), device=device, compute_type=compute_type, batch_size=batch,
                               beam_size=beam, language=language, cpu_threads=threads,
                               segment_max_seconds=max_seconds, block_seconds=block_seconds)


@functools.lru_cache(maxsize=4)
def _ser(engine: str, path: str, device: str, compute_type: str, window: float, hop: float, batch: int,
         threads: int) -> EmotionClassifier:
    if engine == "whisper-head":
        return WhisperHeadEmotionEngine(Path(path), device=device, compute_type=compute_type, window_seconds=window,
                                        hop_seconds=hop, batch_size=batch, cpu_threads=threads)
    _set_torch_threads(threads)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    return TransformersEmotionEngine(Path(path), device=device, window_seconds=window, hop_seconds=hop,
                                     batch_size=batch)


@functools.lru_cache(maxsize=4)
def _diarizer(device: str, min_speakers: int, max_speakers: int) -> SpeakerDiarizer:
    return SpeakerDiarizer(device=device, min_speakers=min_speakers, max_speakers=max_speakers)


def diarizer(s: Settings) -> SpeakerDiarizer | None:
    if s.diarization == "off":
        return None
    return _diarizer(s.ser_device, s.min_speakers, s.max_speakers)


def stt_engine(s: Settings) -> SpeechToText:
    return _stt(s.stt_engine, str(s.stt_model_path), s.stt_device, s.stt_compute_type, s.stt_batch_size,
                s.stt_beam_size, s.stt_language, s.stt_cpu_threads, s.segment_max_seconds, s.stt_block_seconds)


def ser_engine(s: Settings) -> EmotionClassifier:
    return _ser(s.ser_engine, str(s.ser_model_path), s.ser_device, s.ser_compute_type, s.ser_window_seconds,
                s.ser_hop_seconds, s.ser_batch_size, s.ser_cpu_threads)


def pipeline(settings: Settings, store, bus, *, staging_bucket: str, results_bucket: str,
             stt: SpeechToText | None, ser: EmotionClassifier | None,
             diarize: SpeakerDiarizer | None = None) -> Pipeline:
    sentiment_map = parse_sentiment_map(settings.sentiment_map)
    unmapped = [label for label in getattr(ser, "labels", []) if label.lower() not in sentiment_map]
    if unmapped:
        log.warning(
            "SER labels %s have no sentiment and count as NEUTRAL; map them with SENTIMENT_MAP=label=NEGATIVE,...",
            unmapped,
        )
    return Pipeline(
        store=store,
        bus=bus,
        staging_bucket=staging_bucket,
        results_bucket=results_bucket,
        partials_topic=settings.partials_topic,
        sentiment_map=sentiment_map,
        max_audio_seconds=settings.max_audio_seconds,
        stt=stt,
        ser=ser,
        diarizer=diarize,
        channel_mode=settings.channel_mode,
        channel_names=settings.channel_name_list,
    )


@dataclass
class LocalStack:
    """The embedded default: folders for buckets, an in-process bus, both engines in-process."""

    pipeline: Pipeline
    store: LocalBlobStore
    bus: LocalBus
    inbox_bucket: str
    jobs_topic: str

    def close(self) -> None:
        self.bus.close()


def local_store(inbox_dir: Path, results_dir: Path, staging_dir: Path | None = None) -> tuple[LocalBlobStore, str]:
    """The folder store of the local stack and the name of its inbox bucket (the inbox's absolute path)."""
    inbox_bucket = str(inbox_dir.resolve())
    return LocalBlobStore({
        inbox_bucket: inbox_dir,
        LOCAL_RESULTS: results_dir,
        LOCAL_STAGING: staging_dir or results_dir / LOCAL_STAGING_DIR,
    }), inbox_bucket


def local_stack(settings: Settings, inbox_dir: Path, results_dir: Path, staging_dir: Path | None = None) -> LocalStack:
    store, inbox_bucket = local_store(inbox_dir, results_dir, staging_dir)
    bus = LocalBus()
    p = pipeline(settings, store, bus, staging_bucket=LOCAL_STAGING, results_bucket=LOCAL_RESULTS,
                 stt=stt_engine(settings), ser=ser_engine(settings), diarize=diarizer(settings))
    bus.subscribe(settings.jobs_topic, "stt", lambda m: p.handle_job_stt(from_dict(JobMessage, m)))
    bus.subscribe(settings.jobs_topic, "ser", lambda m: p.handle_job_ser(from_dict(JobMessage, m)))
    bus.subscribe(settings.partials_topic, "joiner", lambda m: p.handle_partial(from_dict(PartialReady, m)))
    return LocalStack(p, store, bus, inbox_bucket, settings.jobs_topic)


def cloud_pipeline(settings: Settings, role: str) -> Pipeline | None:
    """The Pipeline of one cloud service role over GCS and Pub/Sub (None for the api role,
    which only calls the other services). STT and SER load their model here, once."""
    from workers.adapters.gcs import GcsBlobStore, storage_client
    from workers.adapters.pubsub import PubSubBus
    from workers.errors import ConfigError

    if role == "api":
        return None
    missing = [env for env, value in (("GOOGLE_CLOUD_PROJECT", settings.project),
                                      ("STAGING_BUCKET", settings.staging_bucket),
                                      ("RESULTS_BUCKET", settings.results_bucket if role == "joiner" else "-"))
               if not value]
    if missing:
        raise ConfigError(f"the {role} service needs {', '.join(missing)}")
    store = GcsBlobStore(storage_client(settings.project, settings.storage_emulator_host))
    return pipeline(settings, store, PubSubBus(settings.project), staging_bucket=settings.staging_bucket,
                    results_bucket=settings.results_bucket,
                    stt=stt_engine(settings) if role == "stt" else None,
                    ser=ser_engine(settings) if role == "ser" else None,
                    diarize=diarizer(settings) if role == "ser" else None)
