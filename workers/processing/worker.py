"""The two workers a job handler can run: STT (words) and SER (emotions and who speaks).

A worker turns decoded audio into its partial and knows how to record a failure; the job
handler around it (``processing.handlers.JobHandler``) owns everything else (download,
idempotency, storing, announcing). The composition root builds one worker per service, so a
service can only ever run the worker it was built with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from workers.core.contracts import Engine, Error, PartialKind, SerPartial, SpeakerTurn, SttPartial
from workers.core.engines import Diarizer, EmotionClassifier, SpeechFinder, SpeechToText
from workers.processing import channels
from workers.processing.channels import classify_channels, transcribe_channels
from workers.processing.audio import DecodedAudio


@dataclass(frozen=True)
class ChannelOptions:
    mode: str = "auto"  # auto, mix or split (CHANNEL_MODE)
    names: tuple[str, ...] = ()  # CHANNEL_NAMES

    @property
    def keep_channels(self) -> bool:
        return self.mode != "mix"

    def plan(self, audio: DecodedAudio) -> channels.ChannelPlan:
        return channels.plan(audio, self.mode, self.names)


class Worker(Protocol):
    kind: PartialKind
    partial_type: type[SttPartial] | type[SerPartial]
    channels: ChannelOptions

    @property
    def engine(self) -> Engine:
        """What makes the partial: a stored partial by another engine is made again."""

    def made_alike(self, partial: SttPartial | SerPartial) -> bool:
        """Whether a stored partial is what this worker makes; one that is not is made again."""

    def analyse(self, job_id: str, audio: DecodedAudio) -> SttPartial | SerPartial:
        """The ok partial for the audio; raises PermanentError for audio that can never work."""

    def failed(self, job_id: str, error: Error) -> SttPartial | SerPartial:
        """The partial that records a permanent failure."""


@dataclass(frozen=True)
class SttWorker:
    kind: ClassVar[PartialKind] = "stt"
    partial_type: ClassVar[type[SttPartial]] = SttPartial
    stt: SpeechToText
    channels: ChannelOptions = ChannelOptions()

    @property
    def engine(self) -> Engine:
        return self.stt.engine

    def made_alike(self, partial: SttPartial | SerPartial) -> bool:
        return partial.engine == self.engine

    def analyse(self, job_id: str, audio: DecodedAudio) -> SttPartial:
        plan = self.channels.plan(audio)
        t = transcribe_channels(self.stt, plan)
        # Whisper names a language even for silence or tones; with no speech there is none.
        language, probability = (t.language, t.language_probability) if t.segments else (None, None)
        return SttPartial(job_id, "ok", None, self.engine, language, probability, t.duration, t.segments,
                          channels=plan.names, speech_coverage=t.coverage.share,
                          repair_budget_spent=t.repair_budget_spent)

    def failed(self, job_id: str, error: Error) -> SttPartial:
        return SttPartial(job_id, "failed", error, self.engine, None, None, None, [])


@dataclass(frozen=True)
class SerWorker:
    kind: ClassVar[PartialKind] = "ser"
    partial_type: ClassVar[type[SerPartial]] = SerPartial
    ser: EmotionClassifier
    diarizer: Diarizer | None = None
    channels: ChannelOptions = ChannelOptions()
    speech: SpeechFinder | None = None  # VAD, for each channel's speech when channels are apart; None: not given

    @property
    def engine(self) -> Engine:
        return self.ser.engine

    def made_alike(self, partial: SttPartial | SerPartial) -> bool:
        """Same emotion engine, and a mono partial's speakers made by this diarizer (or none, as
        this worker makes none): another MIN/MAX_SPEAKERS or DIARIZATION setting redoes it."""
        if partial.engine != self.engine:
            return False
        if not isinstance(partial, SerPartial) or partial.status != "ok" or partial.channels is not None:
            return True
        return partial.diarizer == (self.diarizer.engine if self.diarizer is not None else None)

    def analyse(self, job_id: str, audio: DecodedAudio) -> SerPartial:
        plan = self.channels.plan(audio)
        t = classify_channels(self.ser, plan)
        return SerPartial(job_id, "ok", None, self.engine, t.window_seconds, t.hop_seconds, t.labels, t.windows,
                          t.duration, channels=plan.names, speakers=self._speakers(plan),
                          diarizer=self.diarizer.engine if self.diarizer is not None and plan.names is None else None,
                          uncertain_below=t.uncertain_below)

    def failed(self, job_id: str, error: Error) -> SerPartial:
        return SerPartial(job_id, "failed", error, self.engine, 0.0, 0.0, [], [], None)

    def _speakers(self, plan: channels.ChannelPlan) -> list[SpeakerTurn] | None:
        """Who speaks when: each channel's speech when channels are apart, else the diarizer's turns."""
        if plan.names is not None:
            if self.speech is None:
                return None
            return [SpeakerTurn(start, end, plan.names[c], c)
                    for c, signal in enumerate(plan.signals) for start, end in self.speech(signal)]
        if self.diarizer is None:
            return None
        return [SpeakerTurn(t.start, t.end, t.speaker) for t in self.diarizer.turns(plan.signals[0])]
