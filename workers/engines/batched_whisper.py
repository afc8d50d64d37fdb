"""Whisper windows decoded in batches, where each window is encoded on its own on a CPU.

faster-whisper's ``BatchedInferencePipeline`` runs the encoder over a whole batch at once and,
when no language is given, once more over the first 30 s to detect it. Measured on a 2-core
CPU (Whisper base, int8, 8 windows of 30 s): the encoder's memory grows with its batch (+625 MB
for 8 windows at once, +13 MB one at a time), and it is no faster per window in a batch (5.2 s
for 8 at once, 4.3–4.4 s one by one). Beam search is what gains from a batch (8 windows × 5
beams in one pass of the decoder). So this pipeline encodes window by window on a CPU (a
batch at once on a GPU, which has the memory), decodes the batch together, and reads the
language off the encoder output the first batch already has.

``BatchedWindows.transcribe`` takes the subset of ``BatchedInferencePipeline.transcribe``'s
arguments the STT engine uses (windows given as ``clip_timestamps``, no VAD of its own) and
returns faster-whisper's own ``Segment``s with words, so the rest of faster-whisper (timestamp
splitting, word alignment) runs unchanged; on a CPU the word alignment too runs a few windows
at a time.

A batch of windows that all fit in ``short_window_seconds`` (a short file) is encoded over that
length, not over 30 s (``encoder_seconds``, ``_features``).

It subclasses faster-whisper's pipeline, overrides its ``forward`` and calls ``WhisperModel`` internals
(``encode``, ``get_prompt``, ``add_word_timestamps``, ``TranscriptionOptions``' fields), which change between
releases without notice, so it runs only on the faster-whisper version it was written against (``WRITTEN_FOR``) and
says so clearly on any other.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Sequence

import ctranslate2
import numpy as np
from faster_whisper import BatchedInferencePipeline, WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import Segment, TranscriptionOptions, Word, get_suppressed_tokens

from workers.core.errors import ConfigError
from workers.core.engines import SAMPLE_RATE

WINDOW_SECONDS = 30.0  # what Whisper's encoder was trained on
WRITTEN_FOR = "1.2.1"  # the faster-whisper release whose internals this module uses (requirements.txt pins it)


def check_faster_whisper(installed: str) -> None:
    if installed != WRITTEN_FOR:
        raise ConfigError(
            f"faster-whisper {installed} is installed; the batched STT engine (workers/engines/batched_whisper.py) "
            f"uses internals of faster-whisper {WRITTEN_FOR}: install that version "
            f"(pip install -c constraints.txt faster-whisper=={WRITTEN_FOR}) or decode sequentially (STT_BATCH_SIZE=0)")


@dataclass(frozen=True)
class Detected:
    """The language the decoding used: given, or detected from the first batch."""

    language: str
    language_probability: float


class BatchedWindows(BatchedInferencePipeline):
    def __init__(self, model: WhisperModel, *, encode_batch: int, align_batch: int,
                 short_window_seconds: float = WINDOW_SECONDS) -> None:
        from faster_whisper.version import __version__

        check_faster_whisper(__version__)
        self._short = short_window_seconds
        self._calls = threading.local()  # before the parent sets last_speech_timestamp
        super().__init__(model)
        self._encode_batch = max(1, encode_batch)
        self._align_batch = max(1, align_batch)

    @property
    def last_speech_timestamp(self) -> float:
        """faster-whisper keeps the word aligner's last time on the pipeline: here it is each
        thread's own, so files transcribed at once (``run --jobs``) do not time each other's words."""
        return getattr(self._calls, "last_speech_timestamp", 0.0)

    @last_speech_timestamp.setter
    def last_speech_timestamp(self, value: float) -> None:
        self._calls.last_speech_timestamp = value

    def transcribe(self, audio: np.ndarray, *, clip_timestamps: Sequence[dict], language: str | None,
                   batch_size: int, beam_size: int, word_timestamps: bool,
                   without_timestamps: bool, max_new_tokens: int | None = None) -> tuple[list[Segment], Detected]:
        """The windows ``clip_timestamps`` (``{"start", "end"}`` in seconds of ``audio``, up to
        30 s each) decoded ``batch_size`` at a time, each window's text at most
        ``max_new_tokens`` long (None: Whisper's own limit); segments in ``audio``'s time."""
        if not clip_timestamps:
            return [], Detected(language or "en", 1.0)
        bounds = [(int(c["start"] * SAMPLE_RATE), int(c["end"] * SAMPLE_RATE)) for c in clip_timestamps]
        metadata = [{"offset": a / SAMPLE_RATE, "duration": (b - a) / SAMPLE_RATE} for a, b in bounds]
        features = np.stack(self._features(audio, bounds))
        if not self.model.model.is_multilingual:
            detected: Detected | None = Detected("en", 1.0)
        else:
            detected = Detected(language, 1.0) if language else None
        segments: list[Segment] = []
        tokenizer = options = None
        for i in range(0, len(features), batch_size):
            encoded = self._encode(features[i : i + batch_size])
            if tokenizer is None:  # the first batch: the language is known from here on
                detected = detected or self._detect(encoded)
                tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual,
                                      task="transcribe", language=detected.language)
                options = _options(tokenizer, beam_size, word_timestamps, without_timestamps, max_new_tokens)
            for window in self.forward(encoded, tokenizer, metadata[i : i + batch_size], options):
                segments += [_segment(s, options) for s in window]
        self.last_speech_timestamp = 0.0  # as faster-whisper's generator leaves it for the next call
        return segments, detected

    def forward(self, encoded, tokenizer: Tokenizer, chunks_metadata: list[dict], options: TranscriptionOptions):
        """faster-whisper's step from encoder output to segments with words, whose word
        alignment runs ``align_batch`` windows at a time: over a batch of 8 at once it peaked
        at 0.70–0.86 GB on a 15-minute file (beam search before it: 0.74)."""
        if not options.word_timestamps or self._align_batch >= encoded.shape[0]:
            return super().forward(encoded, tokenizer, chunks_metadata, options)
        windows = super().forward(encoded, tokenizer, chunks_metadata, replace(options, word_timestamps=False))
        frames = [int(math.ceil(m["duration"]) * self.model.frames_per_second) for m in chunks_metadata]
        n = self._align_batch
        for i in range(0, len(windows), n):
            last = self.model.add_word_timestamps(windows[i : i + n], tokenizer, _windows(encoded, i, i + n),
                                                  frames[i : i + n],
                                                  options.prepend_punctuations, options.append_punctuations,
                                                  self.last_speech_timestamp)
            self.last_speech_timestamp = self.last_speech_timestamp if last is None else last
        return windows

    def _features(self, audio: np.ndarray, bounds: list[tuple[int, int]]) -> list[np.ndarray]:
        """Each window's log-mel frames: padded to 30 s as faster-whisper pads them, or, when the
        batch's longest window is encoded over less (``encoder_seconds``: every window of a short
        file), its audio padded with silence to that length. The encoder's cost is about its
        length: over 30 s it was 0.92 of the 1.21 CPU s of STT of a 3.6 s clip on 2 cores, over
        10 s 0.18. Padding the mel frames with zeros instead (faster-whisper's way to 30 s) a few
        seconds past the speech makes Whisper write the sentence twice or drop its last word;
        silence does not (docs/benchmarks.md). A batch holds the windows of one file, so a file
        decodes alike whatever runs beside it."""
        seconds = encoder_seconds(max(b - a for a, b in bounds) / SAMPLE_RATE, self._short)
        if seconds >= WINDOW_SECONDS:
            return [pad_or_trim(self.model.feature_extractor(audio[a:b])[..., :-1]) for a, b in bounds]
        n = int(round(seconds * SAMPLE_RATE))
        frames = n // self.model.feature_extractor.hop_length
        return [self.model.feature_extractor(np.pad(audio[a:b], (0, n - (b - a))))[..., :frames] for a, b in bounds]

    def _encode(self, features: np.ndarray):
        """The encoder's output for ``features``, ``encode_batch`` windows at a time."""
        n = self._encode_batch
        if n >= len(features):
            return self.model.encode(features)
        parts = [np.asarray(self.model.encode(features[i : i + n])) for i in range(0, len(features), n)]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))

    def _detect(self, encoded) -> Detected:
        """The language of the batch's first window, as faster-whisper detects it (its first 30 s).
        Over a whole batch of 8 it took 1 s against 0.03 s for one window."""
        first = _windows(encoded, 0, 1) if encoded.device == "cpu" and encoded.shape[0] > 1 else encoded
        token, probability = self.model.model.detect_language(first)[0][0]
        return Detected(token[2:-2], probability)

    def generate_segment_batched(self, encoded, tokenizer: Tokenizer, options: TranscriptionOptions):
        """faster-whisper's own step (``forward`` calls it) on windows already encoded."""
        prompt = self.model.get_prompt(tokenizer, previous_tokens=[], without_timestamps=options.without_timestamps)
        max_length = self.model.max_length
        if options.max_new_tokens is not None:
            max_length = min(max_length, len(prompt) + options.max_new_tokens)
        results = self.model.model.generate(
            encoded, [list(prompt) for _ in range(encoded.shape[0])], beam_size=options.beam_size,
            patience=options.patience, length_penalty=options.length_penalty, max_length=max_length,
            suppress_blank=options.suppress_blank, suppress_tokens=options.suppress_tokens, return_scores=True,
            return_no_speech_prob=True, sampling_temperature=options.temperatures[0],
            repetition_penalty=options.repetition_penalty, no_repeat_ngram_size=options.no_repeat_ngram_size,
        )
        output = []
        for result in results:
            tokens = result.sequences_ids[0]
            cumulative = result.scores[0] * (len(tokens) ** options.length_penalty)
            output.append({"avg_logprob": cumulative / (len(tokens) + 1), "no_speech_prob": result.no_speech_prob,
                           "tokens": tokens})
        return encoded, output


def encoder_seconds(window_seconds: float, short_window_seconds: float) -> float:
    """The length the encoder sees a window of ``window_seconds`` as: ``short_window_seconds``
    (padded with silence) when it fits, else 30 s (Whisper's own). Only short files gain: a 14 s
    babble encoded over 20 s cost 20.5 CPU s of STT against 15.1 over 30 s (its repair decoded more)."""
    if window_seconds <= 0 or window_seconds > short_window_seconds:
        return WINDOW_SECONDS
    return min(WINDOW_SECONDS, short_window_seconds)


def _windows(encoded: ctranslate2.StorageView, start: int, stop: int) -> ctranslate2.StorageView:
    """Windows ``start`` to ``stop`` of encoder output held on the CPU."""
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.asarray(encoded)[start:stop]))


def _options(tokenizer: Tokenizer, beam_size: int, word_timestamps: bool, without_timestamps: bool,
             max_new_tokens: int | None = None) -> TranscriptionOptions:
    """``BatchedInferencePipeline.transcribe``'s options at its defaults: one temperature, no
    fallback, no prompt."""
    return TranscriptionOptions(
        beam_size=beam_size, best_of=5, patience=1, length_penalty=1, repetition_penalty=1, no_repeat_ngram_size=0,
        log_prob_threshold=-1.0, no_speech_threshold=0.6, compression_ratio_threshold=2.4, temperatures=[0.0],
        initial_prompt=None, prefix=None, suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、", max_new_tokens=max_new_tokens,
        hotwords=None, word_timestamps=word_timestamps, hallucination_silence_threshold=None,
        condition_on_previous_text=False, clip_timestamps=[], prompt_reset_on_temperature=0.5, multilingual=False,
        without_timestamps=without_timestamps, max_initial_timestamp=0.0,
    )


def _segment(found: dict, options: TranscriptionOptions) -> Segment:
    return Segment(
        id=0, seek=found["seek"], start=round(found["start"], 3), end=round(found["end"], 3), text=found["text"],
        tokens=found["tokens"], avg_logprob=found["avg_logprob"], compression_ratio=found["compression_ratio"],
        no_speech_prob=found["no_speech_prob"], temperature=options.temperatures[0],
        words=[Word(**w) for w in found["words"]] if options.word_timestamps else None,
    )
