"""The one composition root: settings in; stores, buses, engines and handlers out.

Every entry point builds a :class:`Root` once (the services, every CLI command, the Cloud
Function, the dev stack) and asks it for what it needs. The local-or-cloud choice is made
here, once: ``Root.cloud(settings)`` wires Cloud Storage and Pub/Sub (or their emulators),
``Root.local(settings, inbox_dir, results_dir)`` wires folders and an in-process bus. Each
engine gets its own settings section, and models load once per process (the engine caches
are keyed by those frozen sections).

Only ``workers.core`` and the adapters are imported at module level: the Cloud Function
packages this module with them and never asks for an engine.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.adapters.local import LocalBlobStore, LocalBus
from workers.core import logs
from workers.core.errors import ConfigError
from workers.core.ports import BlobStore, Bus
from workers.core.settings import LogSettings, SerSettings, Settings, SpeakerSettings, SttSettings
from workers.core.jobs import Buckets

if TYPE_CHECKING:
    from datetime import timedelta

    from workers.engines.diarization import SpeakerDiarizer
    from workers.ops.bq_load import BigQueryLoader
    from workers.ops.ledger import Ledger
    from workers.core.engines import EmotionClassifier
    from workers.core.engines import SpeechToText
    from workers.processing.handlers import Handlers
    from workers.processing.local_stack import LocalStack
    from workers.processing.worker import ChannelOptions

log = logging.getLogger(__name__)

LOCAL_STAGING = "staging"
LOCAL_RESULTS = "results"
LOCAL_STAGING_DIR = ".staging"  # inside the results folder, unless the local stack is given another
PARTS = ("stt", "ser", "joiner")


def configure_logging(log_settings: LogSettings, *, default_level: str | None = None) -> None:
    on_cloud_run = bool(os.environ.get("K_SERVICE") or os.environ.get("CLOUD_RUN_JOB"))
    json_lines = log_settings.log_format == "json" or (log_settings.log_format == "auto" and on_cloud_run)
    logs.configure(json_lines=json_lines, level=default_level or log_settings.log_level)


class Root:
    """What one process is wired to: cloud services, or local folders and an in-process bus."""

    def __init__(self, settings: Settings, local: tuple[Path, Path, Path | None] | None = None) -> None:
        self.settings = settings
        self._local = local
        self._store: BlobStore | None = None

    @classmethod
    def cloud(cls, settings: Settings) -> "Root":
        return cls(settings)

    @classmethod
    def local(cls, settings: Settings, inbox_dir: Path, results_dir: Path, staging_dir: Path | None = None) -> "Root":
        """Folders for buckets: the inbox, the results folder and staging (default RESULTS/.staging)."""
        return cls(settings, (inbox_dir, results_dir, staging_dir))

    @property
    def is_local(self) -> bool:
        return self._local is not None

    # --- stores and buses --------------------------------------------------------------------------
    @property
    def buckets(self) -> Buckets:
        if self._local is not None:
            return Buckets(str(self._local[0].resolve()), LOCAL_STAGING, LOCAL_RESULTS)
        cloud = self.settings.cloud
        return Buckets(cloud.inbox_bucket, cloud.staging_bucket, cloud.results_bucket)

    @property
    def store(self) -> BlobStore:
        if self._store is None:
            if self._local is not None:
                inbox_dir, results_dir, staging_dir = self._local
                self._store = LocalBlobStore({self.buckets.inbox: inbox_dir, LOCAL_RESULTS: results_dir,
                                              LOCAL_STAGING: staging_dir or results_dir / LOCAL_STAGING_DIR})
            else:
                from workers.adapters.gcs import GcsBlobStore, storage_client

                self.require(GOOGLE_CLOUD_PROJECT=self.settings.cloud.project)
                cloud = self.settings.cloud
                self._store = GcsBlobStore(storage_client(cloud.project, cloud.storage_emulator_host))
        return self._store

    def publisher(self) -> Bus:
        """A bus to publish to the cloud topics (close it when done). Locally, use ``local_stack``."""
        if self._local is not None:
            raise ConfigError("a local run publishes to its in-process bus: use local_stack()")
        from workers.adapters.pubsub import PubSubBus

        self.require(GOOGLE_CLOUD_PROJECT=self.settings.cloud.project)
        return PubSubBus(self.settings.cloud.project)

    def dead_letters(self):
        """Pull access to the dead-letter subscriptions (cloud only; close it when done)."""
        from workers.adapters.pubsub_pull import PubSubDeadLetters

        self.require(GOOGLE_CLOUD_PROJECT=self.settings.cloud.project)
        return PubSubDeadLetters(self.settings.cloud.project)

    def ledger(self, run_id: str, stale_after: "timedelta | None" = None) -> "Ledger":
        """The backfill ledger in the staging bucket (markers of what each run sent)."""
        from workers.ops.ledger import Ledger

        if stale_after is None:
            return Ledger(self.store, self.buckets.staging, run_id=run_id)
        return Ledger(self.store, self.buckets.staging, run_id=run_id, stale_after=stale_after)

    def bigquery_loader(self, location: str | None = None) -> "BigQueryLoader":
        """Loads result files into BIGQUERY_TABLE (cloud only)."""
        from google.cloud import bigquery

        from workers.ops.bq_load import BigQueryLoader

        cloud = self.settings.cloud
        self.require(GOOGLE_CLOUD_PROJECT=cloud.project, BIGQUERY_TABLE=cloud.bigquery_table)
        return BigQueryLoader(bigquery.Client(project=cloud.project), cloud.bigquery_table, location=location)

    def require(self, **values: str) -> None:
        missing = [env for env, value in values.items() if not value]
        if missing:
            raise ConfigError(f"set {', '.join(missing)} (environment or option)")

    # --- engines and handlers ------------------------------------------------------------------------
    def stt_engine(self, workers: int = 1) -> "SpeechToText":
        """The STT engine, able to run ``workers`` calls at once (each with its share of the CPU
        threads: ``workers.engines.device.threads_per_worker``)."""
        return _stt_engine(self.settings.stt, self.settings.stt_model_path, max(1, workers))

    def ser_engine(self, workers: int = 1) -> "EmotionClassifier":
        return _ser_engine(self.settings.ser, self.settings.ser_model_path, max(1, workers))

    def diarizer(self) -> "SpeakerDiarizer | None":
        return _diarizer_of(self.settings.speakers, self.settings.ser.device)

    def handlers(self, bus: Bus | None, parts: tuple[str, ...] = PARTS, jobs: int = 1) -> "Handlers":
        """The handlers of ``parts`` (stt, ser, joiner) over this root's store, STT and SER
        announcing their partials on ``bus``; they load their models here, once per process. STT and SER in one
        process decode each job's audio once between them (for up to ``jobs`` files in flight)."""
        from workers.processing.handlers import Handlers, JobHandler, Joiner, SharedDecodes, Staging
        from workers.processing.sentiment_map import parse_sentiment_map
        from workers.processing.worker import SerWorker, SttWorker

        s, buckets = self.settings, self.buckets
        if bus is None and ("stt" in parts or "ser" in parts):
            raise ConfigError("STT and SER need a bus to announce their partials on")
        staging = Staging(self.store, bus, buckets.staging, s.cloud.partials_topic)  # type: ignore[arg-type]
        channels = channel_options(s.speakers)
        handlers = Handlers()
        decodes = SharedDecodes(keep=jobs + 1) if "stt" in parts and "ser" in parts else None
        if "stt" in parts:
            handlers.stt = JobHandler(SttWorker(self.stt_engine(jobs), channels), staging, s.input.max_audio_seconds,
                                      decodes=decodes)
        if "ser" in parts:
            ser = self.ser_engine(jobs)
            warn_unmapped_labels(ser, s.join.sentiment_map)
            from workers.engines.diarization import speech_regions

            worker = SerWorker(ser, self.diarizer(), channels, speech=speech_regions)
            handlers.ser = JobHandler(worker, staging, s.input.max_audio_seconds, decodes=decodes)
        if "joiner" in parts:
            handlers.joiner = Joiner(self.store, buckets.staging, buckets.results,
                                     parse_sentiment_map(s.join.sentiment_map))
        return handlers

    def service_handlers(self, role: str) -> "Handlers | None":
        """What one cloud service runs: its role's handler over GCS and Pub/Sub (None for the
        api role, which only calls the other services), its engine with a worker for each job
        it runs at once (WORKER_CONCURRENCY)."""
        if role == "api":
            return None
        cloud = self.settings.cloud
        self.require(GOOGLE_CLOUD_PROJECT=cloud.project, STAGING_BUCKET=cloud.staging_bucket,
                     **({"RESULTS_BUCKET": cloud.results_bucket} if role == "joiner" else {}))
        return self.handlers(self.publisher() if role in ("stt", "ser") else None, (role,),
                             jobs=self.settings.service.concurrency)

    def local_stack(self, jobs: int = 1) -> "LocalStack":
        """The embedded default: folders for buckets, an in-process bus, both engines in-process,
        with threads enough for ``jobs`` files at once (STT, SER and the joiner of each)."""
        from workers.core.contracts import JobMessage, PartialReady, from_dict
        from workers.processing.local_stack import LocalStack

        bus = LocalBus(workers=max(4, 3 * jobs))
        handlers = self.handlers(bus, jobs=jobs)
        stt, ser, joiner = handlers.stt, handlers.ser, handlers.joiner
        assert stt is not None and ser is not None and joiner is not None
        topics = self.settings.cloud
        bus.subscribe(topics.jobs_topic, "stt", lambda m: stt(from_dict(JobMessage, m)))
        bus.subscribe(topics.jobs_topic, "ser", lambda m: ser(from_dict(JobMessage, m)))
        bus.subscribe(topics.partials_topic, "joiner", lambda m: joiner(from_dict(PartialReady, m)))
        return LocalStack(handlers, self.store, bus, self.buckets, topics.jobs_topic)


# --- engines: built once per process, from their own settings section ----------------------------------


def channel_options(speakers: SpeakerSettings) -> "ChannelOptions":
    from workers.processing.worker import ChannelOptions

    return ChannelOptions(speakers.channel_mode, speakers.channel_name_list)


@functools.lru_cache(maxsize=4)
def _stt_engine(stt: SttSettings, model_path: Path, workers: int) -> "SpeechToText":
    from workers.engines.stt import FasterWhisperEngine, OpenAIWhisperEngine

    if stt.engine == "openai-whisper":
        _set_torch_threads(stt.cpu_threads)
        return OpenAIWhisperEngine.from_settings(stt, model_path)
    return FasterWhisperEngine.from_settings(stt, model_path, workers)


@functools.lru_cache(maxsize=4)
def _ser_engine(ser: SerSettings, model_path: Path, workers: int) -> "EmotionClassifier":
    if ser.engine == "whisper-head":
        from workers.engines.ser_whisper import WhisperHeadEmotionEngine

        return WhisperHeadEmotionEngine.from_settings(ser, model_path, workers)
    _set_torch_threads(ser.cpu_threads)
    import transformers

    from workers.engines.ser import TransformersEmotionEngine

    transformers.utils.logging.disable_progress_bar()
    return TransformersEmotionEngine.from_settings(ser, model_path)


def _diarizer_of(speakers: SpeakerSettings, device: str) -> "SpeakerDiarizer | None":
    if not speakers.diarization:
        return None
    return _diarizer(speakers, device)


@functools.lru_cache(maxsize=4)
def _diarizer(speakers: SpeakerSettings, device: str) -> "SpeakerDiarizer":
    from workers.engines.diarization import SpeakerDiarizer

    return SpeakerDiarizer.from_settings(speakers, device)


def warn_unmapped_labels(ser: Any, sentiment_map: str) -> None:
    from workers.processing.sentiment_map import parse_sentiment_map

    mapping = parse_sentiment_map(sentiment_map)
    unmapped = [label for label in getattr(ser, "labels", []) if label.lower() not in mapping]
    if unmapped:
        log.warning(
            "SER labels %s have no sentiment and count as NEUTRAL; map them with SENTIMENT_MAP=label=NEGATIVE,...",
            unmapped,
        )


def _set_torch_threads(n: int) -> None:
    if n > 0:
        import torch

        torch.set_num_threads(n)
