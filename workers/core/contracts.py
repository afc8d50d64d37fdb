"""The messages and records that cross process boundaries, as typed dataclasses.

Each top-level type mirrors a JSON Schema in ``schemas/`` (``SCHEMA_FILES`` names it); a
contract test checks that every dataclass field is in its schema and the other way round,
and that golden examples validate and round-trip. ``to_dict``/``from_dict`` are the only
(de)serialisers; ``dumps`` gives the canonical one-line JSON used for every stored record.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, TypeVar, get_args, get_origin, get_type_hints

Source = Literal["upload", "backfill", "api"]
Status = Literal["ok", "failed"]
Sentiment = Literal["POSITIVE", "NEGATIVE", "NEUTRAL"]
PartialKind = Literal["stt", "ser"]
# What the summary's emotion was scored over: the transcript's segments, or (no segment had words)
# the speech regions diarization or VAD found.
EmotionSource = Literal["transcript", "speech"]

FLOAT_DIGITS = 4


@dataclass(frozen=True)
class Error:
    code: str
    message: str

    @property
    def text(self) -> str:
        """``code: message``, as summaries and status lines show a failure."""
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class JobMessage:
    job_id: str
    bucket: str
    name: str
    generation: int
    content_type: Optional[str]
    size: int
    source: Source
    submitted_at: str


@dataclass(frozen=True)
class Engine:
    name: str
    model: str
    version: str
    trained: bool = True
    # A short note on the terms of the data the model was trained on (the emotion head's), or None.
    licence: Optional[str] = None


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float
    speaker: Optional[str] = None  # set by the joiner


@dataclass(frozen=True)
class SpeakerTurn:
    start: float
    end: float
    speaker: str
    channel: Optional[int] = None


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    words: list[Word]
    channel: Optional[int] = None  # 0-based source channel when channels are analysed apart
    speaker: Optional[str] = None  # set by the joiner


@dataclass(frozen=True)
class Timing:
    started_at: str
    finished_at: str
    seconds: float


@dataclass(frozen=True)
class SttPartial:
    job_id: str
    status: Status
    error: Optional[Error]
    engine: Engine
    language: Optional[str]
    language_probability: Optional[float]
    duration: Optional[float]
    segments: list[Segment]
    timing: Optional[Timing] = None
    channels: Optional[list[str]] = None  # names of the channels analysed apart; None: mono
    speech_coverage: Optional[float] = None  # share of VAD's speech that words cover; None: no speech
    decode_warnings: Optional[list[str]] = None  # what a file decoded in part lost; None: decoded whole
    repair_budget_spent: Optional[bool] = None  # the repair wanted more than STT_REPAIR_PASSES; None: no such repair


@dataclass(frozen=True)
class EmotionWindow:
    start: float
    end: float
    scores: list[float]  # one per entry of SerPartial.labels, same order
    channel: Optional[int] = None


@dataclass(frozen=True)
class SerPartial:
    job_id: str
    status: Status
    error: Optional[Error]
    engine: Engine
    window_seconds: float
    hop_seconds: float
    labels: list[str]
    windows: list[EmotionWindow]
    duration: Optional[float] = None
    timing: Optional[Timing] = None
    channels: Optional[list[str]] = None
    speakers: Optional[list[SpeakerTurn]] = None  # who speaks when (turns may overlap); None: not analysed
    decode_warnings: Optional[list[str]] = None
    diarizer: Optional[Engine] = None  # what made ``speakers`` on mono audio; None: channels, or not diarized
    # calibrated probability under which a segment's emotion is uncertain (the head's); None: the engine states none
    uncertain_below: Optional[float] = None


@dataclass(frozen=True)
class PartialReady:
    job: JobMessage
    kind: PartialKind
    status: Status
    staging_bucket: str
    staging_key: str


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class SegmentEmotion:
    label: str
    sentiment: Sentiment
    scores: list[LabelScore]
    # the top score is below SerPartial.uncertain_below; None: no threshold known (an engine or record without one)
    uncertain: Optional[bool] = None


@dataclass(frozen=True)
class ScoredSentiment:
    label: Sentiment
    score: float  # from -1 (negative) to 1 (positive)


@dataclass(frozen=True)
class ResultSegment(Segment):
    emotion: Optional[SegmentEmotion] = None
    text_sentiment: Optional[ScoredSentiment] = None  # of the words (English only)
    fused_sentiment: Optional[ScoredSentiment] = None  # of voice and words together


@dataclass(frozen=True)
class SpeakerSummary:
    speaker: str
    channel: Optional[int]
    talk_seconds: float
    share: float  # of all speakers' talk time
    turns: int
    dominant_emotion: Optional[str]
    distribution: list[LabelScore]
    sentiment_distribution: list[LabelScore]
    text_sentiment: Optional[ScoredSentiment]
    interruptions: int  # turns begun while another speaker was still talking
    overlap_seconds: float
    uncertain_seconds: Optional[float] = None  # of the scored speech whose emotion is uncertain; None: no threshold


@dataclass(frozen=True)
class Summary:
    dominant_emotion: Optional[str]
    sentiment: Optional[Sentiment]
    distribution: list[LabelScore]
    sentiment_distribution: list[LabelScore]
    speech_seconds: float
    text_sentiment: Optional[ScoredSentiment] = None
    uncertain_seconds: Optional[float] = None  # of speech_seconds whose emotion is uncertain; None: no threshold
    emotion_from: Optional[EmotionSource] = None  # None: a record from before the field (the transcript)


@dataclass(frozen=True)
class Engines:
    stt: Engine
    ser: Engine
    diarizer: Optional[Engine] = None  # what made the speakers of mono audio; None: channels, or not diarized


@dataclass(frozen=True)
class ResultTimings:
    stt: Optional[Timing]
    ser: Optional[Timing]
    completed_at: str


@dataclass(frozen=True)
class Result:
    job: JobMessage
    status: Status
    error: Optional[Error]
    language: Optional[str]
    language_probability: Optional[float]
    duration: Optional[float]
    segments: list[ResultSegment]
    summary: Optional[Summary]
    engines: Engines
    pipeline_version: str
    submitted_at: str  # copy of job.submitted_at at top level: BigQuery partitions on it
    timings: ResultTimings = field(metadata={"volatile": True})
    channels: Optional[list[str]] = None
    speakers: Optional[list[SpeakerSummary]] = None
    speech_coverage: Optional[float] = None  # copy of SttPartial.speech_coverage
    decode_warnings: Optional[list[str]] = None  # the partials' (both decode the same file)
    # who speaks when from diarization, named as the segments' speakers; turns may overlap
    # (two people at once). None: not diarized (channels analysed apart, DIARIZATION=off, an older record)
    turns: Optional[list[SpeakerTurn]] = None
    repair_budget_spent: Optional[bool] = None  # copy of SttPartial.repair_budget_spent


@dataclass(frozen=True)
class StoredResult:
    """What the pipeline decides on in a stored result (which upload, how it ended, made by what),
    readable from a result of any pipeline version."""

    job: JobMessage
    status: Status
    error: Optional[Error]
    engines: Engines
    pipeline_version: str
    duration: Optional[float] = None

    @classmethod
    def from_json(cls, data: str | bytes) -> "StoredResult":
        """Raises ValueError when ``data`` is not a result."""
        return loads_known(cls, data)

    @property
    def why_failed(self) -> str:
        return self.error.text if self.error else "failed"


@dataclass(frozen=True)
class StoredPartial:
    """How a stored STT or SER partial ended and what made it, whatever pipeline version wrote it."""

    job_id: str
    status: Status
    error: Optional[Error]
    engine: Engine

    @classmethod
    def from_json(cls, data: str | bytes) -> "StoredPartial":
        """Raises ValueError when ``data`` is not a partial."""
        return loads_known(cls, data)


SCHEMA_FILES: dict[type, str] = {
    JobMessage: "job.schema.json",
    SttPartial: "stt_partial.schema.json",
    SerPartial: "ser_partial.schema.json",
    PartialReady: "partial_ready.schema.json",
    Result: "result.schema.json",
}

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """Plain JSON-ready data; floats rounded so equal inputs give equal bytes."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return round(obj, FLOAT_DIGITS)
    return obj


def from_dict(cls: type[T], data: Any, *, known_only: bool = False) -> T:
    """Build ``cls`` from plain data, checking field names and types; raises ValueError naming where the data does
    not fit (``segments[3].start``). With ``known_only``, fields ``cls`` does not name are left out at every level
    (a record a newer pipeline version wrote), instead of refused."""
    return _convert(cls, data, known_only, "")


@functools.cache
def _hints(tp: type) -> tuple[dict[str, Any], frozenset[str]]:
    return get_type_hints(tp), frozenset(f.name for f in dataclasses.fields(tp))


def _convert(tp: Any, data: Any, known_only: bool, where: str) -> Any:
    at = f" at {where}" if where else ""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if data is None:
            return None
        return _convert(args[0], data, known_only, where)
    if origin is list:
        if not isinstance(data, list):
            raise ValueError(f"expected a list{at}, got {type(data).__name__}")
        (item,) = get_args(tp)
        return [_convert(item, v, known_only, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is Literal:
        if data not in get_args(tp):
            raise ValueError(f"{data!r}{at} is not one of {get_args(tp)}")
        return data
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for {tp.__name__}{at}, got {type(data).__name__}")
        hints, names = _hints(tp)
        unknown = set(data) - names
        if unknown and not known_only:
            raise ValueError(f"unknown field(s) for {tp.__name__}{at}: {sorted(unknown)}")
        prefix = f"{where}." if where else ""
        kwargs = {k: _convert(hints[k], v, known_only, prefix + k) for k, v in data.items() if k in names}
        try:
            return tp(**kwargs)
        except TypeError as e:
            raise ValueError(f"cannot build {tp.__name__}{at}: {e}") from e
    if tp is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if tp is int and isinstance(data, str) and data.isdigit():
        return int(data)  # GCS and Pub/Sub JSON carry int64 as strings
    if tp in (int, float, str, bool) and not isinstance(data, tp):
        raise ValueError(f"expected {tp.__name__}{at}, got {data!r}")
    return data


def dumps(obj: Any) -> str:
    """Canonical one-line JSON: sorted keys, no spaces, no trailing newline."""
    return json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def loads(cls: type[T], text: str | bytes) -> T:
    return from_dict(cls, json.loads(text))


def loads_known(cls: type[T], text: str | bytes) -> T:
    """Like ``loads``, for a record another pipeline version may have written: the top-level
    fields ``cls`` does not name are left out. Raises ValueError when it is not such a record."""
    body = json.loads(text)
    if not isinstance(body, dict):
        raise ValueError(f"a stored {cls.__name__} is a JSON object")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]  # T is a dataclass by contract
    return from_dict(cls, {name: body[name] for name in names if name in body})
