"""The engine ports: what the pipeline asks of a speech-to-text engine, an emotion classifier and a diarizer, and the
values they answer with. The engines (``workers/engines``) implement them and the workers (``workers/processing``)
use them, so a new engine is written against the core alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from workers.core.contracts import EmotionWindow, Engine, Segment

SAMPLE_RATE = 16_000  # every engine gets mono float32 audio at this rate


@dataclass(frozen=True)
class Coverage:
    """Seconds of speech found by VAD, and of those, seconds that decoded words account for."""

    speech_seconds: float = 0.0
    covered_seconds: float = 0.0

    def __add__(self, other: Coverage) -> Coverage:
        return Coverage(self.speech_seconds + other.speech_seconds, self.covered_seconds + other.covered_seconds)

    @property
    def share(self) -> float | None:
        """Covered share of the speech; None where VAD found none (nothing to cover)."""
        if self.speech_seconds <= 0:
            return None
        return min(1.0, max(0.0, self.covered_seconds / self.speech_seconds))


@dataclass(frozen=True)
class Transcript:
    language: str | None
    language_probability: float | None
    duration: float
    segments: list[Segment]
    coverage: Coverage = Coverage()  # VAD's speech and the part of it the words cover; none: not measured
    repair_budget_spent: bool | None = None  # the repair wanted more passes than STT_REPAIR_PASSES; None: no repair


class SpeechToText(Protocol):
    engine: Engine

    def transcribe(self, audio: np.ndarray) -> Transcript: ...


@dataclass(frozen=True)
class EmotionTrack:
    window_seconds: float
    hop_seconds: float
    labels: list[str]
    windows: list[EmotionWindow]
    duration: float
    uncertain_below: float | None = None  # calibrated top score under which an emotion is uncertain; None: unknown


class EmotionClassifier(Protocol):
    engine: Engine

    def classify(self, audio: np.ndarray) -> EmotionTrack: ...


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


class Diarizer(Protocol):
    engine: Engine  # what a result records as having made its speakers

    def turns(self, audio: np.ndarray) -> list[Turn]: ...


class SpeechFinder(Protocol):
    """Where there is speech in audio (VAD): (start, end) seconds."""

    def __call__(self, audio: np.ndarray) -> list[tuple[float, float]]: ...
