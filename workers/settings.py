"""Every setting the pipeline reads, in one place.

Each field names the environment variable it comes from (the same name locally, in the
Cloud Run services, in the Cloud Function and in Terraform) and explains itself; the CLI
builds its ``--help`` and the README its table from these fields. Only the composition
root (``bootstrap``) and the CLI call :meth:`Settings.from_env`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from workers.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]


def _setting(default: Any, env: str, help: str, group: str = "core") -> Any:
    return field(default=default, metadata={"env": env, "help": help, "group": group})


DEVICES = ("auto", "cpu", "cuda")
ON_OFF = ("on", "off")
SER_ENGINES = ("whisper-head", "transformers")
DEFAULT_SER_MODEL = "ser-whisper-base-emodb"


@dataclass(frozen=True)
class Settings:
    # --- models and engines -------------------------------------------------------------
    models_dir: str = _setting(
        str(REPO_ROOT / ".models"),
        "MODELS_DIR",
        "Folder where `python -m workers setup` assembles the offline default models.",
    )
    stt_engine: str = _setting(
        "faster-whisper", "STT_ENGINE", "Speech-to-text engine: faster-whisper or openai-whisper."
    )
    stt_model: str = _setting(
        "",
        "STT_MODEL",
        "Local path of the STT model: a CTranslate2 Whisper folder (faster-whisper) or a .pt "
        "checkpoint (openai-whisper). Empty: the multilingual Whisper base assembled by setup.",
    )
    stt_device: str = _setting("auto", "STT_DEVICE", "auto, cpu or cuda (auto picks cuda when present).")
    stt_compute_type: str = _setting(
        "auto", "STT_COMPUTE_TYPE", "CTranslate2 compute type; auto is int8 on CPU and float16 on CUDA."
    )
    stt_batch_size: int = _setting(
        8, "STT_BATCH_SIZE", "faster-whisper batched inference size; 0 decodes sequentially."
    )
    stt_beam_size: int = _setting(5, "STT_BEAM_SIZE", "Beam size for decoding (1 is greedy).")
    stt_language: str = _setting("", "STT_LANGUAGE", "Force a language code (e.g. en); empty detects it.")
    stt_cpu_threads: int = _setting(0, "STT_CPU_THREADS", "CPU threads for STT; 0 uses every CPU this process may run on.")
    stt_block_seconds: float = _setting(
        120.0,
        "STT_BLOCK_SECONDS",
        "Long audio is transcribed in blocks of about this length, cut at quiet points; memory "
        "grows with the block, not the file. A GPU fills its batches better with 240 or more.",
    )
    segment_max_seconds: float = _setting(
        12.0,
        "SEGMENT_MAX_SECONDS",
        "Segments longer than this are split at the longest pause between words.",
    )
    ser_engine: str = _setting(
        "whisper-head",
        "SER_ENGINE",
        "Speech-emotion engine: whisper-head (Whisper's encoder plus a small trained head) or transformers "
        "(any local audio-classification checkpoint).",
    )
    ser_model: str = _setting(
        "",
        "SER_MODEL",
        "Local path of the SER model: a whisper-head folder (head.npz, MODEL_CARD.md, encoder/) or a "
        "transformers audio-classification checkpoint. Empty: the whisper-head trained on Berlin EmoDB, "
        "assembled by setup (whisper-head only).",
    )
    ser_device: str = _setting("auto", "SER_DEVICE", "auto, cpu or cuda.")
    ser_compute_type: str = _setting(
        "auto", "SER_COMPUTE_TYPE", "CTranslate2 compute type of the whisper-head encoder; auto is int8 on CPU "
        "and float16 on CUDA.",
    )
    ser_window_seconds: float = _setting(
        3.0, "SER_WINDOW_SECONDS", "Length of each emotion window in seconds."
    )
    ser_hop_seconds: float = _setting(1.5, "SER_HOP_SECONDS", "Step between emotion windows in seconds.")
    ser_batch_size: int = _setting(16, "SER_BATCH_SIZE", "Emotion windows classified per forward pass.")
    ser_cpu_threads: int = _setting(0, "SER_CPU_THREADS",
                                   "CPU threads for SER; 0 uses every CPU (whisper-head) or torch's default (transformers).")
    channel_mode: str = _setting(
        "auto",
        "CHANNEL_MODE",
        "auto: a two-channel recording whose channels carry different talkers (a call recorded agent-left, "
        "customer-right) is analysed per channel, everything else as mono; mix: always mono; split: each "
        "channel (up to 8) apart.",
    )
    channel_names: str = _setting(
        "", "CHANNEL_NAMES", "Comma-separated speaker names of the channels, in order (e.g. agent,customer); "
        "unnamed channels are CH1, CH2, ...",
    )
    diarization: str = _setting(
        "on", "DIARIZATION", "Find who speaks when in mono audio (on or off); segments and words get S1, S2, ...",
    )
    min_speakers: int = _setting(0, "MIN_SPEAKERS", "Fewest speakers diarization may find; 0: no bound.")
    max_speakers: int = _setting(0, "MAX_SPEAKERS", "Most speakers diarization may find; 0: no bound.")
    sentiment_map: str = _setting(
        "",
        "SENTIMENT_MAP",
        "Extra label=POSITIVE|NEGATIVE|NEUTRAL pairs, comma separated, over the built-in map.",
    )
    # --- input rules --------------------------------------------------------------------
    max_audio_seconds: float = _setting(
        4 * 3600.0, "MAX_AUDIO_SECONDS", "Longer audio fails with a clear error (default 4 h)."
    )
    ignore_patterns: str = _setting(
        ".DS_Store,._*,Thumbs.db,desktop.ini",
        "IGNORE_PATTERNS",
        "Comma-separated globs (matched on the object name and on its base name) that never become jobs.",
    )
    inbox_prefix: str = _setting(
        "", "INBOX_PREFIX", "Only objects under this prefix become jobs (empty: the whole inbox)."
    )
    # --- cloud wiring -------------------------------------------------------------------
    role: str = _setting("", "ROLE", "Service role: stt, ser, joiner or api.", "cloud")
    port: int = _setting(8080, "PORT", "HTTP port of the service.", "cloud")
    project: str = _setting("", "GOOGLE_CLOUD_PROJECT", "Google Cloud project id.", "cloud")
    inbox_bucket: str = _setting("", "INBOX_BUCKET", "Bucket that receives audio uploads.", "cloud")
    staging_bucket: str = _setting("", "STAGING_BUCKET", "Bucket for STT/SER partial results.", "cloud")
    results_bucket: str = _setting("", "RESULTS_BUCKET", "Bucket for merged results.", "cloud")
    jobs_topic: str = _setting("jobs", "JOBS_TOPIC", "Pub/Sub topic id for job messages.", "cloud")
    partials_topic: str = _setting(
        "partials", "PARTIALS_TOPIC", "Pub/Sub topic id for 'partial ready' messages.", "cloud"
    )
    push_auth: str = _setting(
        "on",
        "PUSH_AUTH",
        "Verify the OIDC token on Pub/Sub push requests: on, or off (refused unless PUBSUB_EMULATOR_HOST "
        "is on the loopback).",
        "cloud",
    )
    push_audience: str = _setting("", "PUSH_AUDIENCE", "Expected audience of push OIDC tokens.", "cloud")
    push_service_account: str = _setting(
        "", "PUSH_SERVICE_ACCOUNT", "Expected service-account email of push OIDC tokens.", "cloud"
    )
    oidc_certs_url: str = _setting(
        "",
        "OIDC_CERTS_URL",
        "Certificates for OIDC verification; empty uses Google's. Tests point it at 127.0.0.1.",
        "cloud",
    )
    pubsub_emulator_host: str = _setting(
        "", "PUBSUB_EMULATOR_HOST", "host:port of a Pub/Sub emulator (dev stack and tests only).", "cloud"
    )
    storage_emulator_host: str = _setting(
        "", "STORAGE_EMULATOR_HOST", "URL of a GCS emulator (dev stack and tests only).", "cloud"
    )
    id_tokens: str = _setting(
        "on",
        "ID_TOKENS",
        "Send a Google ID token with the api role's calls to STT and SER: on, or off (refused unless "
        "both URLs are on the loopback).",
        "cloud",
    )
    stt_url: str = _setting("", "STT_URL", "Base URL of the STT service (used by the api role).", "cloud")
    ser_url: str = _setting("", "SER_URL", "Base URL of the SER service (used by the api role).", "cloud")
    stt_audience: str = _setting(
        "", "STT_AUDIENCE", "ID-token audience for the STT service; empty uses STT_URL.", "cloud"
    )
    ser_audience: str = _setting(
        "", "SER_AUDIENCE", "ID-token audience for the SER service; empty uses SER_URL.", "cloud"
    )
    max_request_bytes: int = _setting(
        200 * 1024 * 1024, "MAX_REQUEST_BYTES", "Largest audio body accepted by direct endpoints.", "cloud"
    )
    request_timeout_seconds: float = _setting(
        900.0, "REQUEST_TIMEOUT_SECONDS", "Timeout of the api role's calls to STT and SER.", "cloud"
    )
    dead_letter_subscriptions: str = _setting(
        "",
        "DEAD_LETTER_SUBSCRIPTIONS",
        "Comma-separated dead-letter pull subscriptions (status looks in them, redrive empties them).",
        "cloud",
    )
    bigquery_table: str = _setting(
        "", "BIGQUERY_TABLE", "Results table as project.dataset.table (load-bigquery).", "cloud"
    )
    # --- logging ------------------------------------------------------------------------
    log_format: str = _setting(
        "auto", "LOG_FORMAT", "auto (JSON on Cloud Run, text elsewhere), json or text.", "logging"
    )
    log_level: str = _setting("INFO", "LOG_LEVEL", "Python log level.", "logging")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read every setting from ``environ`` (default: ``os.environ``); keyword overrides win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _coerce(f, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> "Settings":
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.metadata['env']} must be a finite number, got {value!r}")
        choices = {"STT_ENGINE": (self.stt_engine, ("faster-whisper", "openai-whisper")),
                   "STT_DEVICE": (self.stt_device, DEVICES),
                   "SER_ENGINE": (self.ser_engine, SER_ENGINES),
                   "CHANNEL_MODE": (self.channel_mode, ("auto", "mix", "split")),
                   "DIARIZATION": (self.diarization, ON_OFF), "SER_DEVICE": (self.ser_device, DEVICES),
                   "PUSH_AUTH": (self.push_auth, ON_OFF), "ID_TOKENS": (self.id_tokens, ON_OFF),
                   "LOG_FORMAT": (self.log_format, ("auto", "json", "text")),
                   "LOG_LEVEL": (self.log_level.upper(), ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))}
        for env, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{env} must be one of {', '.join(allowed)}, got {value!r}")
        for env, value, least in (("STT_BEAM_SIZE", self.stt_beam_size, 1), ("STT_BATCH_SIZE", self.stt_batch_size, 0),
                                  ("SER_BATCH_SIZE", self.ser_batch_size, 1),
                                  ("STT_CPU_THREADS", self.stt_cpu_threads, 0),
                                  ("SER_CPU_THREADS", self.ser_cpu_threads, 0),
                                  ("MIN_SPEAKERS", self.min_speakers, 0), ("MAX_SPEAKERS", self.max_speakers, 0)):
            if value < least:
                raise ConfigError(f"{env} must be at least {least}, got {value}")
        if self.ser_window_seconds <= 0 or self.ser_hop_seconds <= 0:
            raise ConfigError("SER_WINDOW_SECONDS and SER_HOP_SECONDS must be positive")
        if self.ser_hop_seconds > self.ser_window_seconds:
            raise ConfigError(
                f"SER_HOP_SECONDS ({self.ser_hop_seconds}) larger than SER_WINDOW_SECONDS "
                f"({self.ser_window_seconds}) would leave audio unclassified"
            )
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise ConfigError(f"MIN_SPEAKERS ({self.min_speakers}) is more than MAX_SPEAKERS ({self.max_speakers})")
        if self.max_audio_seconds <= 0:
            raise ConfigError("MAX_AUDIO_SECONDS must be positive")
        if self.inbox_bucket and self.inbox_bucket in (self.staging_bucket, self.results_bucket):
            raise ConfigError(
                f"INBOX_BUCKET {self.inbox_bucket!r} is also the staging or results bucket: outputs would be "
                "taken for uploads, so the pipeline needs separate buckets"
            )
        return self

    @property
    def stt_model_path(self) -> Path:
        if self.stt_model:
            return Path(self.stt_model).expanduser()
        return Path(self.models_dir) / "whisper-base-ct2"

    @property
    def ser_model_path(self) -> Path:
        if self.ser_model:
            return Path(self.ser_model).expanduser()
        if self.ser_engine == "transformers":
            raise ConfigError("SER_ENGINE=transformers needs SER_MODEL: the path of a local audio-classification "
                              "checkpoint (the default model is a whisper-head one)")
        return Path(self.models_dir) / DEFAULT_SER_MODEL

    @property
    def channel_name_list(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.channel_names.split(",") if n.strip())

    @property
    def ignore_globs(self) -> tuple[str, ...]:
        return tuple(p.strip() for p in self.ignore_patterns.split(",") if p.strip())


def _coerce(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str}[f.type]
    try:
        return kind(raw)
    except ValueError as e:
        raise ConfigError(f"{f.metadata['env']}={raw!r} is not a valid {kind.__name__}") from e


def settings_table() -> list[tuple[str, str, str, str]]:
    """(env name, default, group, help) for every setting: the README table and --help."""
    rows = []
    for f in fields(Settings):
        default = f.default
        if f.name == "models_dir":
            default = "<repo>/.models"
        rows.append((f.metadata["env"], str(default), f.metadata["group"], f.metadata["help"]))
    return rows
