"""Every setting the pipeline reads, in small frozen sections, in one place.

Each field names the environment variable it comes from (the same name locally, in the
Cloud Run services, in the Cloud Function and in Terraform), its option name (the variable
in lower case: ``STT_MODEL`` is ``--stt-model`` and ``Settings.from_env(stt_model=...)``)
and explains itself; the CLI builds its ``--help`` and docs/configuration.md its table from these
fields. Values are coerced and checked in one place (:func:`_coerce`, :meth:`Settings.validated`).
Only the composition root and the CLI read the environment; each part of the code gets the
section it uses (``settings.stt``, ``settings.push``, ...), never the whole object.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

from workers.core.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _default_models_dir() -> Path:
    """`<repo>/.models` in a checkout (or an editable install); the user's cache once installed from a wheel,
    where the package sits in site-packages and has no repository around it."""
    if (REPO_ROOT / "workers").is_dir() and (REPO_ROOT / "schemas").is_dir():
        return REPO_ROOT / ".models"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "speechmood" / "models"

DEVICES = ("auto", "cpu", "cuda")
STT_ENGINES = ("faster-whisper", "openai-whisper")
SER_ENGINES = ("whisper-head", "transformers")
CHANNEL_MODES = ("auto", "mix", "split")
LOG_FORMATS = ("auto", "json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ROLES = ("stt", "ser", "joiner", "api")
DEFAULT_STT_MODEL = "whisper-base-ct2"
DEFAULT_SER_MODEL = "ser-whisper-base"
_TRUE, _FALSE = ("on", "true", "1", "yes"), ("off", "false", "0", "no")


def _setting(default: Any, env: str, help: str, *, option: str = "", choices: tuple[str, ...] = (),
             least: float | None = None, positive: bool = False) -> Any:
    return field(default=default, metadata={
        "env": env, "help": help, "option": option or env.lower(), "choices": choices, "least": least,
        "positive": positive,
    })


@dataclass(frozen=True)
class ModelSettings:
    GROUP: ClassVar[str] = "core"
    models_dir: str = _setting(str(_default_models_dir()), "MODELS_DIR",
                               "Folder where `python -m workers setup` assembles the offline default models.")


@dataclass(frozen=True)
class SttSettings:
    GROUP: ClassVar[str] = "core"
    engine: str = _setting("faster-whisper", "STT_ENGINE", "Speech-to-text engine: faster-whisper or openai-whisper.",
                           choices=STT_ENGINES)
    model: str = _setting(
        "", "STT_MODEL",
        "Local path of the STT model: a CTranslate2 Whisper folder (faster-whisper) or a .pt "
        "checkpoint (openai-whisper). Empty: the multilingual Whisper base assembled by setup.",
    )
    device: str = _setting("auto", "STT_DEVICE", "auto, cpu or cuda (auto picks cuda when present).", choices=DEVICES)
    compute_type: str = _setting("auto", "STT_COMPUTE_TYPE",
                                 "CTranslate2 compute type; auto is int8 on CPU and float16 on CUDA.")
    batch_size: int = _setting(8, "STT_BATCH_SIZE", "faster-whisper batched inference size; 0 decodes sequentially.",
                               least=0)
    beam_size: int = _setting(5, "STT_BEAM_SIZE", "Beam size for decoding (1 is greedy).", least=1)
    language: str = _setting("", "STT_LANGUAGE", "Force a language code (e.g. en); empty detects it.")
    cpu_threads: int = _setting(0, "STT_CPU_THREADS",
                                "CPU threads for STT; 0 uses every CPU this process may run on.", least=0)
    block_seconds: float = _setting(
        120.0, "STT_BLOCK_SECONDS",
        "Voice activity detection runs over long audio in blocks of about this length, cut at quiet "
        "points, so its memory does not grow with the file.", positive=True,
    )
    repair_passes: int = _setting(
        2, "STT_REPAIR_PASSES",
        "Decoder passes per 30 s window of a file (pooled over the file) that faster-whisper may spend decoding "
        "again the speech a first decoding lost or looped over (a hole: one pass; a sequential decoding: one "
        "per temperature it tries). Spent, the rest stays as first decoded, loops cut, and the result says "
        "repair_budget_spent; 0: no repair.", least=0,
    )
    short_window_seconds: float = _setting(
        10.0, "STT_SHORT_WINDOW_SECONDS",
        "faster-whisper's batched decoder pads a batch of windows that all fit in this many seconds with silence to "
        "this length, not to Whisper's 30 s (the encoder costs about its length: short files run "
        "about 3x faster on a CPU, at the same word error rate on 2-4 s clips); 30: always 30 s.", positive=True,
    )
    segment_max_seconds: float = _setting(12.0, "SEGMENT_MAX_SECONDS",
                                          "Segments longer than this are split at the longest pause between words.",
                                          positive=True)


@dataclass(frozen=True)
class SerSettings:
    GROUP: ClassVar[str] = "core"
    engine: str = _setting(
        "whisper-head", "SER_ENGINE",
        "Speech-emotion engine: whisper-head (Whisper's encoder plus a small trained head) or transformers "
        "(any local audio-classification checkpoint).", choices=SER_ENGINES,
    )
    model: str = _setting(
        "", "SER_MODEL",
        "Local path of the SER model: a whisper-head folder (head.npz, MODEL_CARD.md, encoder/) or a "
        "transformers audio-classification checkpoint. Empty: the whisper-head trained on four emotion corpora "
        "(EmoDB, RAVDESS, TESS, URDU; research and non-commercial terms, see its model card), "
        "assembled by setup (whisper-head only).",
    )
    device: str = _setting("auto", "SER_DEVICE", "auto, cpu or cuda.", choices=DEVICES)
    compute_type: str = _setting(
        "auto", "SER_COMPUTE_TYPE", "CTranslate2 compute type of the whisper-head encoder; auto is int8 on CPU "
        "and float16 on CUDA.",
    )
    window_seconds: float = _setting(3.0, "SER_WINDOW_SECONDS", "Length of each emotion window in seconds.",
                                     positive=True)
    hop_seconds: float = _setting(1.5, "SER_HOP_SECONDS", "Step between emotion windows in seconds.", positive=True)
    batch_size: int = _setting(16, "SER_BATCH_SIZE", "Emotion windows classified per forward pass.", least=1)
    cpu_threads: int = _setting(
        0, "SER_CPU_THREADS",
        "CPU threads for SER; 0 uses every CPU (whisper-head) or torch's default (transformers).", least=0,
    )


@dataclass(frozen=True)
class SpeakerSettings:
    GROUP: ClassVar[str] = "core"
    channel_mode: str = _setting(
        "auto", "CHANNEL_MODE",
        "auto: a two-channel recording whose channels carry different talkers (a call recorded agent-left, "
        "customer-right) is analysed per channel, everything else as mono; mix: always mono; split: each "
        "channel (up to 8) apart.", choices=CHANNEL_MODES,
    )
    channel_names: str = _setting(
        "", "CHANNEL_NAMES", "Comma-separated speaker names of the channels, in order (e.g. agent,customer); "
        "unnamed channels are CH1, CH2, ...",
    )
    diarization: bool = _setting(
        True, "DIARIZATION", "Find who speaks when in mono audio (on or off); segments and words get S1, S2, ...",
    )
    min_speakers: int = _setting(0, "MIN_SPEAKERS", "Fewest speakers diarization may find; 0: no bound.", least=0)
    max_speakers: int = _setting(0, "MAX_SPEAKERS", "Most speakers diarization may find; 0: no bound.", least=0)

    @property
    def channel_name_list(self) -> tuple[str, ...]:
        return _items(self.channel_names)


@dataclass(frozen=True)
class JoinSettings:
    GROUP: ClassVar[str] = "core"
    sentiment_map: str = _setting(
        "", "SENTIMENT_MAP", "Extra label=POSITIVE|NEGATIVE|NEUTRAL pairs, comma separated, over the built-in map.",
    )


@dataclass(frozen=True)
class InputSettings:
    """Which objects become jobs, and the longest audio a job may hold."""

    GROUP: ClassVar[str] = "core"
    max_audio_seconds: float = _setting(4 * 3600.0, "MAX_AUDIO_SECONDS",
                                        "Longer audio fails with a clear error (default 4 h).", positive=True)
    ignore_patterns: str = _setting(
        ".DS_Store,._*,Thumbs.db,desktop.ini", "IGNORE_PATTERNS",
        "Comma-separated globs (matched on the object name and on its base name) that never become jobs.",
    )
    inbox_prefix: str = _setting("", "INBOX_PREFIX",
                                 "Only objects under this prefix become jobs (empty: the whole inbox).")

    @property
    def ignore_globs(self) -> tuple[str, ...]:
        return _items(self.ignore_patterns)


@dataclass(frozen=True)
class ServiceSettings:
    GROUP: ClassVar[str] = "cloud"
    role: str = _setting("", "ROLE", "Service role: stt, ser, joiner or api.")
    port: int = _setting(8080, "PORT", "HTTP port of the service.", least=0)
    max_request_bytes: int = _setting(200 * 1024 * 1024, "MAX_REQUEST_BYTES",
                                      "Largest audio body accepted by direct endpoints.", least=1)
    concurrency: int = _setting(
        1, "WORKER_CONCURRENCY",
        "Jobs an STT or SER service instance runs at once, each on its own engine worker (a GPU with room "
        "for more than one file's batch); Cloud Run's request concurrency is this plus WORKER_QUEUE.", least=1,
    )
    queue: int = _setting(
        2, "WORKER_QUEUE",
        "Jobs an STT or SER service instance holds waiting for a free slot; a push past WORKER_CONCURRENCY + "
        "WORKER_QUEUE is answered 429, and Pub/Sub delivers it again after its backoff.", least=0,
    )


@dataclass(frozen=True)
class CloudSettings:
    """Where the pipeline's records live and travel on Google Cloud (or its emulators)."""

    GROUP: ClassVar[str] = "cloud"
    project: str = _setting("", "GOOGLE_CLOUD_PROJECT", "Google Cloud project id.", option="project")
    inbox_bucket: str = _setting("", "INBOX_BUCKET", "Bucket that receives audio uploads.")
    staging_bucket: str = _setting("", "STAGING_BUCKET", "Bucket for STT/SER partial results.")
    results_bucket: str = _setting("", "RESULTS_BUCKET", "Bucket for merged results.")
    jobs_topic: str = _setting("jobs", "JOBS_TOPIC", "Pub/Sub topic id for job messages.")
    partials_topic: str = _setting("partials", "PARTIALS_TOPIC", "Pub/Sub topic id for 'partial ready' messages.")
    pubsub_emulator_host: str = _setting("", "PUBSUB_EMULATOR_HOST",
                                         "host:port of a Pub/Sub emulator (dev stack and tests only).")
    storage_emulator_host: str = _setting("", "STORAGE_EMULATOR_HOST",
                                          "URL of a GCS emulator (dev stack and tests only).")
    dead_letter_subscriptions: str = _setting(
        "", "DEAD_LETTER_SUBSCRIPTIONS",
        "Comma-separated dead-letter pull subscriptions (status looks in them, redrive empties them).",
    )
    bigquery_table: str = _setting("", "BIGQUERY_TABLE", "Results table as project.dataset.table (load-bigquery).")

    @property
    def dead_letter_subscription_list(self) -> tuple[str, ...]:
        return _items(self.dead_letter_subscriptions)


@dataclass(frozen=True)
class PushAuthSettings:
    """How push requests from Pub/Sub are authenticated."""

    GROUP: ClassVar[str] = "cloud"
    push_auth: bool = _setting(
        True, "PUSH_AUTH",
        "Verify the OIDC token on Pub/Sub push requests: on, or off (refused unless PUBSUB_EMULATOR_HOST "
        "is on the loopback).",
    )
    push_audience: str = _setting("", "PUSH_AUDIENCE", "Expected audience of push OIDC tokens.")
    push_service_account: str = _setting("", "PUSH_SERVICE_ACCOUNT",
                                         "Expected service-account email of push OIDC tokens.")
    oidc_certs_url: str = _setting("", "OIDC_CERTS_URL",
                                   "Certificates for OIDC verification; empty uses Google's. "
                                   "Tests point it at 127.0.0.1.")


@dataclass(frozen=True)
class ApiSettings:
    """The api role's calls to the STT and SER services."""

    GROUP: ClassVar[str] = "cloud"
    id_tokens: bool = _setting(
        True, "ID_TOKENS",
        "Send a Google ID token with the api role's calls to STT and SER: on, or off (refused unless "
        "both URLs are on the loopback).",
    )
    stt_url: str = _setting("", "STT_URL", "Base URL of the STT service (used by the api role).")
    ser_url: str = _setting("", "SER_URL", "Base URL of the SER service (used by the api role).")
    stt_audience: str = _setting("", "STT_AUDIENCE", "ID-token audience for the STT service; empty uses STT_URL.")
    ser_audience: str = _setting("", "SER_AUDIENCE", "ID-token audience for the SER service; empty uses SER_URL.")
    request_timeout_seconds: float = _setting(900.0, "REQUEST_TIMEOUT_SECONDS",
                                              "Timeout of the api role's calls to STT and SER.", positive=True)


@dataclass(frozen=True)
class LogSettings:
    GROUP: ClassVar[str] = "logging"
    log_format: str = _setting("auto", "LOG_FORMAT", "auto (JSON on Cloud Run, text elsewhere), json or text.",
                               choices=LOG_FORMATS)
    log_level: str = _setting("INFO", "LOG_LEVEL", "Python log level.", choices=LOG_LEVELS)


@dataclass(frozen=True)
class Settings:
    """All sections; ``settings.stt.model``, ``settings.cloud.staging_bucket``, ..."""

    models: ModelSettings = field(default_factory=ModelSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    ser: SerSettings = field(default_factory=SerSettings)
    speakers: SpeakerSettings = field(default_factory=SpeakerSettings)
    join: JoinSettings = field(default_factory=JoinSettings)
    input: InputSettings = field(default_factory=InputSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    cloud: CloudSettings = field(default_factory=CloudSettings)
    push: PushAuthSettings = field(default_factory=PushAuthSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    log: LogSettings = field(default_factory=LogSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read every setting from ``environ`` (default: ``os.environ``); keyword overrides, by
        option name (``stt_model=...``), win. None means "not given"."""
        environ = os.environ if environ is None else environ
        given = {s.option: environ[s.env] for s in SETTINGS if environ.get(s.env, "") != ""}
        given.update({k: v for k, v in overrides.items() if v is not None})
        return cls().replace(**given)

    def replace(self, **changes: Any) -> "Settings":
        """A copy with settings changed by option name, coerced and validated like the environment."""
        by_option = {s.option: s for s in SETTINGS}
        unknown = sorted(set(changes) - set(by_option))
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(unknown)}")
        sections: dict[str, dict[str, Any]] = {}
        for option, value in changes.items():
            s = by_option[option]
            sections.setdefault(s.section, {})[s.name] = _coerce(s, value)
        return dataclasses.replace(self, **{
            name: dataclasses.replace(getattr(self, name), **values) for name, values in sections.items()
        }).validated()

    def validated(self) -> "Settings":
        """Every field against its rule (finite, choices, least, positive), then the rules across fields."""
        for s in SETTINGS:
            _check(s, s.value(self))
        if self.ser.hop_seconds > self.ser.window_seconds:
            raise ConfigError(f"SER_HOP_SECONDS ({self.ser.hop_seconds}) larger than SER_WINDOW_SECONDS "
                              f"({self.ser.window_seconds}) would leave audio unclassified")
        lo, hi = self.speakers.min_speakers, self.speakers.max_speakers
        if lo and hi and lo > hi:
            raise ConfigError(f"MIN_SPEAKERS ({lo}) is more than MAX_SPEAKERS ({hi})")
        cloud = self.cloud
        if cloud.inbox_bucket and cloud.inbox_bucket in (cloud.staging_bucket, cloud.results_bucket):
            raise ConfigError(
                f"INBOX_BUCKET {cloud.inbox_bucket!r} is also the staging or results bucket: outputs would be "
                "taken for uploads, so the pipeline needs separate buckets"
            )
        return self

    @property
    def stt_model_path(self) -> Path:
        if self.stt.model:
            return Path(self.stt.model).expanduser()
        return Path(self.models.models_dir) / DEFAULT_STT_MODEL

    @property
    def ser_model_path(self) -> Path:
        if self.ser.model:
            return Path(self.ser.model).expanduser()
        if self.ser.engine == "transformers":
            raise ConfigError("SER_ENGINE=transformers needs SER_MODEL: the path of a local audio-classification "
                              "checkpoint (the default model is a whisper-head one)")
        return Path(self.models.models_dir) / DEFAULT_SER_MODEL


@dataclass(frozen=True)
class Setting:
    """One setting: its section, field and the metadata the CLI, the docs and the checks use."""

    section: str
    name: str
    kind: type
    default: Any
    group: str
    meta: Mapping[str, Any]

    @property
    def env(self) -> str:
        return self.meta["env"]

    @property
    def option(self) -> str:
        return self.meta["option"]

    @property
    def help(self) -> str:
        return self.meta["help"]

    @property
    def shown_default(self) -> str:
        if self.env == "MODELS_DIR":
            return "<repo>/.models (installed: ~/.cache/speechmood/models)"
        return self.as_env(self.default)

    def value(self, settings: Settings) -> Any:
        return getattr(getattr(settings, self.section), self.name)

    def as_env(self, value: Any) -> str:
        """``value`` as the environment variable's text."""
        if self.kind is bool:
            return "on" if value else "off"
        return str(value)


def _all_settings() -> Iterator[Setting]:
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    for section in fields(Settings):
        cls: Any = section.default_factory  # each section's default is its own frozen dataclass
        for f in fields(cls):
            yield Setting(section.name, f.name, kinds[f.type] if isinstance(f.type, str) else f.type, f.default,
                          cls.GROUP, f.metadata)


SETTINGS: tuple[Setting, ...] = tuple(_all_settings())


def _coerce(s: Setting, raw: Any) -> Any:
    """``raw`` (text from the environment or an option, or a value) as the setting's type."""
    if s.kind is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(f"{s.env} must be on or off, got {raw!r}")
    if isinstance(raw, s.kind) and not isinstance(raw, bool):
        return raw
    if s.kind is float and isinstance(raw, int) and not isinstance(raw, bool):
        return float(raw)
    if not isinstance(raw, str):
        raise ConfigError(f"{s.env}={raw!r} is not a valid {s.kind.__name__}")
    try:
        return s.kind(raw)
    except ValueError as e:
        raise ConfigError(f"{s.env}={raw!r} is not a valid {s.kind.__name__}") from e


def _check(s: Setting, value: Any) -> None:
    meta = s.meta
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{s.env} must be a finite number, got {value!r}")
    if meta["choices"] and (value.upper() if s.env == "LOG_LEVEL" else value) not in meta["choices"]:
        raise ConfigError(f"{s.env} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta["least"] is not None and value < meta["least"]:
        raise ConfigError(f"{s.env} must be at least {meta['least']}, got {value}")
    if meta["positive"] and value <= 0:
        raise ConfigError(f"{s.env} must be positive, got {value}")


def _items(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def settings_table() -> list[tuple[str, str, str, str]]:
    """(env name, default, group, help) for every setting: the configuration table and --help."""
    return [(s.env, s.shown_default, s.group, s.help) for s in SETTINGS]


def readme_table() -> str:
    """The configuration table of docs/configuration.md, as the code defines it."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    rows += [f"| `{env}` | `{default or '(empty)'}` | {help} |" for env, default, _, help in settings_table()]
    return "\n".join(rows)
