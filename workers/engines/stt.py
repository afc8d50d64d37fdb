"""Speech to text over the whole file: faster-whisper by default, openai-whisper by setting.

Both engines load their model once, from a local path, and return the same ``Transcript``:
language with its probability, and sentence-sized segments with word timestamps. Whisper
(batched faster-whisper especially) returns segments up to ~30 s long; ``split_segments``
cuts them at sentence punctuation and then, while still longer than ``max_seconds``, at
the longest pause between words, so every segment can carry its own emotion.

Each transcript also says how much of the speech it accounts for (``coverage``: VAD's
speech regions against the time the words cover, ``workers.engines.coverage``). faster-whisper
decodes windows of the audio as it is, batched, then decodes again, sequentially, any window
that left a hole in its speech or whose text loops, and keeps the better-covering text.
"""

from __future__ import annotations

import base64
import bisect
import gzip
import logging
import math
import os
import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from workers.processing.audio import SAMPLE_RATE
from workers.core.contracts import Engine, Segment, Word
from workers.engines.coverage import Coverage, Span, holes, in_speech, repeats_itself, speech_regions, windows
from workers.engines.identity import model_id
from workers.core.errors import ConfigError

log = logging.getLogger(__name__)

SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")
CLAUSE_END = (",", ";", ":", "，", "、", "；")


@dataclass(frozen=True)
class Transcript:
    language: str | None
    language_probability: float | None
    duration: float
    segments: list[Segment]
    coverage: Coverage = Coverage()  # VAD's speech and the part of it the words cover; none: not measured


class SpeechToText(Protocol):
    engine: Engine

    def transcribe(self, audio: np.ndarray) -> Transcript: ...


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except Exception:  # noqa: BLE001 - no CUDA runtime means CPU
        return "cpu"


class FasterWhisperEngine:
    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "auto",
        compute_type: str = "auto",
        batch_size: int = 8,
        beam_size: int = 5,
        language: str = "",
        cpu_threads: int = 0,
        segment_max_seconds: float = 12.0,
        block_seconds: float = 120.0,
    ) -> None:
        import faster_whisper

        if not (model_path / "model.bin").is_file():
            raise ConfigError(
                f"no CTranslate2 Whisper model at {model_path} (model.bin missing); "
                "run `python -m workers setup` or set STT_MODEL"
            )
        self.device = resolve_device(device)
        if compute_type == "auto":
            compute_type = "float16" if self.device == "cuda" else "int8"
        self.compute_type = compute_type
        # CTranslate2's own default is 4 threads, which oversubscribes small machines.
        threads = cpu_threads or len(os.sched_getaffinity(0))
        self._model = faster_whisper.WhisperModel(
            str(model_path), device=self.device, compute_type=compute_type, cpu_threads=threads
        )
        self._batched = faster_whisper.BatchedInferencePipeline(self._model) if batch_size > 0 else None
        self._batch_size = batch_size
        self._beam_size = beam_size
        self._language = language or None
        self._max_seconds = segment_max_seconds
        self._block_seconds = block_seconds
        self.engine = Engine("faster-whisper", model_id(model_path), faster_whisper.__version__, True)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """The whole file, in blocks of about ``block_seconds`` cut at quiet points.

        faster-whisper runs its VAD over everything it is given at once, with memory growing
        with the length; blocks keep a 4-hour file in the memory of a 2-minute one. The first
        block with speech fixes the language for the rest (unless STT_LANGUAGE sets it).
        """
        detected: tuple[str, float] | None = None  # from the first block with speech
        first_guess: tuple[str, float] | None = None
        raw: list[Segment] = []
        coverage = Coverage()
        for start, end in block_bounds(audio, int(self._block_seconds * SAMPLE_RATE)):
            language = self._language or (detected[0] if detected else None)
            segments, guess, block_coverage = self._transcribe_block(audio[start:end], language)
            first_guess = first_guess or guess
            if detected is None and segments:
                detected = guess
            raw += [_shifted(seg, start / SAMPLE_RATE) for seg in segments]
            coverage += block_coverage
        language, probability = detected or first_guess or (self._language, None)
        return Transcript(
            language=language,
            language_probability=probability,
            duration=len(audio) / SAMPLE_RATE,
            segments=split_segments(raw, self._max_seconds),
            coverage=coverage,
        )

    def _transcribe_block(
        self, audio: np.ndarray, language: str | None
    ) -> tuple[list[Segment], tuple[str, float] | None, Coverage]:
        """Decode the speech windows of one block, then decode again, one by one and sequentially,
        the windows whose speech the words do not cover or whose text loops."""
        regions = speech_regions(audio)
        if not regions:
            return [], None, Coverage()
        spans = windows(regions)
        if self._batched is not None:
            found, info = self._batched.transcribe(
                audio, clip_timestamps=[{"start": a, "end": b} for a, b in spans], language=language,
                batch_size=self._batch_size, beam_size=self._beam_size, word_timestamps=True,
            )
        else:
            found, info = self._model.transcribe(
                audio, clip_timestamps=[t for span in spans for t in span], language=language,
                beam_size=self._beam_size, word_timestamps=True, condition_on_previous_text=False,
            )
        segments = self._repaired(audio, info.language, regions, spans, [_decoded(s) for s in found])
        return segments, (info.language, info.language_probability), Coverage.of(regions, segments)

    def _repaired(self, audio: np.ndarray, language: str, regions: list[Span], spans: list[Span],
                  segments: list[Segment]) -> list[Segment]:
        by_window: list[list[Segment]] = [[] for _ in spans]
        starts = [a for a, _ in spans]
        for seg in segments:  # by its middle: faster-whisper rounds a start to 1 ms, before its window
            by_window[max(0, bisect.bisect_right(starts, (seg.start + seg.end) / 2) - 1)].append(seg)
        out: list[Segment] = []
        for (start, end), first in zip(spans, by_window):
            speech = [(max(a, start), min(b, end)) for a, b in regions if a < end and b > start]
            if holes(speech, first) or _loops(first):
                again = self._decode_window(audio, start, end, language)
                if _quality(speech, again) > _quality(speech, first):
                    log.debug("window %.1f-%.1f s decoded again: %d -> %d words", start, end,
                              sum(len(s.words) for s in first), sum(len(s.words) for s in again))
                    first = again
            # Whisper writes text into pauses (a "Thank you." after the speech ends): drop it.
            out += [s for s in first if in_speech(s, speech)]
        return out

    def _decode_window(self, audio: np.ndarray, start: float, end: float, language: str) -> list[Segment]:
        """Sequential decoding of one window: timestamps, seeking on after an early end of text,
        temperature fallback on a loop or a low log-probability. No prompt: given the text
        before, Whisper base was seen to repeat its last phrase through the whole window."""
        window = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        found, _ = self._model.transcribe(window, language=language, beam_size=self._beam_size,
                                          word_timestamps=True, condition_on_previous_text=False)
        return [_shifted(_decoded(s), start) for s in found]


def _decoded(segment) -> Segment:
    return decoded_segment(segment.start, segment.end, segment.text, segment.avg_logprob, segment.no_speech_prob,
                           [(w.start, w.end, w.word, w.probability) for w in (segment.words or [])])


def _quality(speech: list[Span], segments: list[Segment]) -> tuple[bool, float]:
    """A text that loops loses (a loop's words are spread over the whole window, so it covers
    speech well); then the one that covers more speech."""
    return not _loops(segments), Coverage.of(speech, segments).covered_seconds


def _loops(segments: list[Segment]) -> bool:
    """Over the window's whole text: a loop also comes as the same short segment again and again."""
    return repeats_itself(" ".join(s.text for s in segments))


def decoded_segment(start: float, end: float, text: str, avg_logprob: float, no_speech_prob: float,
                    words: Sequence[tuple[float, float, str, float]]) -> Segment:
    """A segment as either Whisper library reports it, with its numbers made finite: JSON and
    BigQuery take finite numbers only, and a decoder can report -inf or NaN."""
    return Segment(
        id=0,
        start=float(start),
        end=float(end),
        text=text.strip(),
        avg_logprob=_finite(avg_logprob, -100.0),
        no_speech_prob=_finite(no_speech_prob, 1.0),
        words=[Word(float(a), float(b), word, _finite(p, 0.0)) for a, b, word, p in words],
    )


def _finite(value: float, instead: float) -> float:
    return float(value) if math.isfinite(value) else instead


def _shifted(segment: Segment, offset: float) -> Segment:
    if not offset:
        return segment
    return replace(
        segment,
        start=segment.start + offset,
        end=segment.end + offset,
        words=[replace(w, start=w.start + offset, end=w.end + offset) for w in segment.words],
    )


def block_bounds(audio: np.ndarray, block: int, search: int = 15 * SAMPLE_RATE) -> list[tuple[int, int]]:
    """Sample ranges of about ``block`` samples, each cut at the quietest 100 ms near its end."""
    n = len(audio)
    if n <= block + block // 5:
        return [(0, n)]
    frame = SAMPLE_RATE // 10
    bounds, start = [], 0
    while n - start > block + block // 5:
        lo, hi = start + block - search, min(start + block + search, n - frame)
        frames = audio[lo : lo + (hi - lo) // frame * frame].reshape(-1, frame)
        quietest = int(np.argmin(np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))))
        cut = lo + quietest * frame + frame // 2
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds


class OpenAIWhisperEngine:
    """openai-whisper from a local ``.pt`` checkpoint, fed the decoded array (no ffmpeg binary)."""

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "auto",
        beam_size: int = 5,
        language: str = "",
        segment_max_seconds: float = 12.0,
    ) -> None:
        import torch
        import whisper

        if not model_path.is_file():
            raise ConfigError(f"no openai-whisper checkpoint at {model_path}; set STT_MODEL to a .pt file")
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self._whisper = whisper
        self._model = _load_openai_whisper(model_path, self.device)
        self._beam_size = beam_size
        self._language = language or None
        self._max_seconds = segment_max_seconds
        self.engine = Engine("openai-whisper", model_id(model_path), whisper.__version__, True)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        whisper = self._whisper
        language, probability = self._language, None
        if language is None:
            if self._model.is_multilingual:
                mel = whisper.log_mel_spectrogram(
                    whisper.pad_or_trim(audio), self._model.dims.n_mels, device=self._model.device
                )
                _, probs = self._model.detect_language(mel)
                language = max(probs, key=probs.get)
                probability = float(probs[language])
            else:
                language, probability = "en", 1.0
        result = self._model.transcribe(
            audio,
            language=language,
            word_timestamps=True,
            fp16=self.device == "cuda",
            beam_size=self._beam_size,
            condition_on_previous_text=False,
            verbose=None,
        )
        raw = [
            decoded_segment(s["start"], s["end"], s["text"], s["avg_logprob"], s["no_speech_prob"],
                            [(w["start"], w["end"], w["word"], w["probability"]) for w in s.get("words", [])])
            for s in result["segments"]
        ]
        return Transcript(language, probability, len(audio) / SAMPLE_RATE, split_segments(raw, self._max_seconds),
                          Coverage.of(speech_regions(audio), raw))


def _load_openai_whisper(path: Path, device: str):
    """``whisper.load_model`` for a local file, plus the alignment heads a converted checkpoint
    carries (``workers.engines.ct2_whisper``): the library sets heads only for its own named models, and
    falls back to every head of the upper half of the decoder, which times words worse."""
    import torch
    from whisper.model import ModelDimensions, Whisper

    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
        model = Whisper(ModelDimensions(**checkpoint["dims"]))
        model.load_state_dict(checkpoint["model_state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, pickle.UnpicklingError) as e:
        raise ConfigError(f"{path} is not an openai-whisper checkpoint: {e}") from e
    if checkpoint.get("alignment_heads"):
        mask = np.zeros((model.dims.n_text_layer, model.dims.n_text_head), dtype=bool)
        for layer, head in checkpoint["alignment_heads"]:
            mask[layer, head] = True
        model.set_alignment_heads(base64.b85encode(gzip.compress(mask.tobytes())))
    return model.to(device)


def split_segments(segments: Sequence[Segment], max_seconds: float) -> list[Segment]:
    """Sentence-sized segments, renumbered from 0; text rebuilt from the words."""
    out: list[Segment] = []
    for segment in segments:
        if not segment.words:
            if segment.text:
                out.append(segment)
            continue
        for sentence in _split_sentences(segment.words):
            for piece in _split_long(sentence, max_seconds):
                out.append(
                    replace(
                        segment,
                        start=piece[0].start,
                        end=max(piece[-1].end, piece[0].start),
                        text="".join(w.word for w in piece).strip(),
                        words=list(piece),
                    )
                )
    return [replace(s, id=i) for i, s in enumerate(out)]


def _split_sentences(words: Sequence[Word]) -> list[list[Word]]:
    sentences: list[list[Word]] = [[]]
    for word in words:
        sentences[-1].append(word)
        if word.word.strip().endswith(SENTENCE_END):
            sentences.append([])
    return [s for s in sentences if s]


def _split_long(words: list[Word], max_seconds: float) -> list[list[Word]]:
    if len(words) < 2 or words[-1].end - words[0].start <= max_seconds:
        return [words]
    best, best_score = 1, float("-inf")
    for i in range(1, len(words)):
        gap = words[i].start - words[i - 1].end
        clause = 0.25 if words[i - 1].word.strip().endswith(CLAUSE_END) else 0.0
        # Prefer pauses and clause ends; among equals, a cut near the middle.
        balance = -abs((words[i].start - words[0].start) - (words[-1].end - words[i].start)) * 1e-3
        score = gap + clause + balance
        if score > best_score:
            best, best_score = i, score
    return _split_long(words[:best], max_seconds) + _split_long(words[best:], max_seconds)
