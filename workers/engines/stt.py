"""Speech to text over the whole file: faster-whisper by default, openai-whisper by setting.

Both engines load their model once, from a local path, and return the same ``Transcript``:
language with its probability, and sentence-sized segments with word timestamps. Whisper
(batched faster-whisper especially) returns segments up to ~30 s long; ``split_segments``
cuts them at sentence punctuation and then, while still longer than ``max_seconds``, at
the longest pause between words, so every segment can carry its own emotion.

Each transcript also says how much of the speech it accounts for (``coverage``: VAD's
speech regions against the time the words cover, ``workers.engines.coverage``). faster-whisper
decodes windows of the audio as it is, batched (``workers.engines.batched_whisper``), then
decodes again each hole the words leave in the speech (from pause to pause, with the words
timed over it; a batch's holes together) and, sequentially, any window still holed or whose
text loops, keeping the text that covers more of the speech.
"""

from __future__ import annotations

import base64
import bisect
import gzip
import logging
import math
import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from workers.core.settings import SttSettings
from workers.core.contracts import Engine, Segment, Word
from workers.core.engines import SAMPLE_RATE, Coverage, Transcript
from workers.engines.coverage import Span, coverage_of, hole_clips, holes, in_speech, speech_regions, windows
from workers.engines.loops import cut, loops
from workers.engines.repair_budget import FALLBACK_TEMPERATURES, RepairBudget, token_limit
from workers.engines.device import ctranslate2_device, threads_per_worker, torch_device
from workers.engines.heap import release_freed_memory, share_one_arena
from workers.engines.identity import model_id
from workers.core.errors import ConfigError

log = logging.getLogger(__name__)

SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")
CLAUSE_END = (",", ";", ":", "，", "、", "；")
# A window whose words cover less than this share of its speech is decoded again whole, at once:
# its holes are most of it.
MOSTLY_LOST_SHARE = 0.5


class FasterWhisperEngine:
    @classmethod
    def from_settings(cls, stt: SttSettings, model_path: Path, workers: int = 1) -> "FasterWhisperEngine":
        return cls(model_path, workers=workers, device=stt.device, compute_type=stt.compute_type,
                   batch_size=stt.batch_size,
                   beam_size=stt.beam_size, language=stt.language, cpu_threads=stt.cpu_threads,
                   segment_max_seconds=stt.segment_max_seconds, block_seconds=stt.block_seconds,
                   repair_passes=stt.repair_passes, short_window_seconds=stt.short_window_seconds)

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
        repair_passes: int = 2,
        short_window_seconds: float = 10.0,
        workers: int = 1,
    ) -> None:
        import faster_whisper

        from workers.engines.batched_whisper import BatchedWindows

        share_one_arena()  # before CTranslate2 starts its threads (workers.engines.heap)
        if not (model_path / "model.bin").is_file():
            raise ConfigError(
                f"no CTranslate2 Whisper model at {model_path} (model.bin missing); "
                "run `python -m workers setup` or set STT_MODEL"
            )
        self.device = ctranslate2_device(device)
        if compute_type == "auto":
            compute_type = "float16" if self.device == "cuda" else "int8"
        self.compute_type = compute_type
        # CTranslate2's own default is 4 threads, which oversubscribes small machines; files
        # transcribed at once each get a worker of their own (one worker runs one call at a time).
        self.workers, self.threads = max(1, workers), threads_per_worker(cpu_threads, workers)
        self._model = faster_whisper.WhisperModel(
            str(model_path), device=self.device, compute_type=compute_type, cpu_threads=self.threads,
            num_workers=self.workers,
        )
        # A GPU encodes and aligns a whole batch at once; a CPU encodes window by window and aligns
        # 4 at a time (workers.engines.batched_whisper).
        on_gpu = self.device == "cuda"
        self._batched = BatchedWindows(self._model, encode_batch=batch_size if on_gpu else 1,
                                       align_batch=batch_size if on_gpu else 4,
                                       short_window_seconds=short_window_seconds) if batch_size > 0 else None
        self._batch_size = batch_size
        self._beam_size = beam_size
        self._language = language or None
        self._max_seconds = segment_max_seconds
        self._block_seconds = block_seconds
        self._repair_passes = repair_passes
        self.engine = Engine("faster-whisper", model_id(model_path), faster_whisper.__version__, True)

    def transcribe(self, audio: np.ndarray) -> Transcript:
        """The whole file: VAD's speech regions, found in blocks of about ``block_seconds`` cut
        at quiet points (Silero runs over everything it is given at once), then the speech
        windows formed over the whole file (so no block end cuts a window short: each window
        costs an encoder pass, however little speech it holds), ``batch_size`` windows at a
        time. A batch's memory is that of its beam search, not of the file's length. The first
        windows with words fix the language for the rest (unless STT_LANGUAGE sets it). The
        repair of the whole file spends passes from one pool (``workers.engines.repair_budget``).
        """
        regions = speech_regions(audio, block_seconds=self._block_seconds)
        spans = windows(regions)
        budget = RepairBudget.for_windows(len(spans), self._repair_passes)
        detected: tuple[str, float] | None = None  # from the first windows with words
        first_guess: tuple[str, float] | None = None
        raw: list[Segment] = []
        coverage = Coverage()
        for batch in even_batches(spans, max(1, self._batch_size)):
            speech = [(a, b) for a, b in regions if a < batch[-1][1] and b > batch[0][0]]
            language = self._language or (detected[0] if detected else None)
            segments, guess = self._transcribe_windows(audio, batch, speech, language, budget)
            first_guess = first_guess or guess
            if detected is None and segments:
                detected = guess
            raw += segments
            coverage += coverage_of(speech, segments)
            release_freed_memory()
        language, probability = detected or first_guess or (self._language, None)
        return Transcript(
            language=language,
            language_probability=probability,
            duration=len(audio) / SAMPLE_RATE,
            segments=split_segments(raw, self._max_seconds),
            coverage=coverage,
            repair_budget_spent=budget.ran_out,
        )

    def _transcribe_windows(self, audio: np.ndarray, spans: list[Span], regions: list[Span],
                            language: str | None, budget: RepairBudget) -> tuple[list[Segment], tuple[str, float]]:
        """Decode the windows ``spans`` together, then decode again the stretches whose speech
        the words do not cover and the windows whose text loops."""
        found, info, dense = self._decode_together(audio, spans, _speech_of(spans, regions), language,
                                                   timestamps=False)
        repaired = self._repaired(audio, info.language, regions, spans, found, dense, budget)
        return repaired, (info.language, info.language_probability)

    def _decode_together(self, audio: np.ndarray, spans: list[Span], speech: list[list[Span]], language: str | None,
                         *, timestamps: bool) -> tuple[list[Segment], Any, list[bool]]:
        """The segments of ``spans`` (in ``audio``'s time) decoded as one batch, the decoder's
        info, and for each span whether its text ran to the token limit of its ``speech``
        (a loop, cut there)."""
        offset = spans[0][0]
        piece = audio[int(offset * SAMPLE_RATE) : int(spans[-1][1] * SAMPLE_RATE)]
        clips = [(a - offset, b - offset) for a, b in spans]
        limits = [token_limit(sum(b - a for a, b in regions)) for regions in speech]
        if self._batched is not None:
            found, info = self._batched.transcribe(
                piece, clip_timestamps=[{"start": a, "end": b} for a, b in clips], language=language,
                batch_size=self._batch_size, beam_size=self._beam_size, word_timestamps=True,
                without_timestamps=not timestamps, max_new_tokens=max(limits),
            )
        else:
            found, info = self._model.transcribe(
                piece, clip_timestamps=[t for clip in clips for t in clip], language=language,
                beam_size=self._beam_size, word_timestamps=True, condition_on_previous_text=False,
                max_new_tokens=max(limits),
            )
            found = list(found)
        tokens = [0] * len(spans)
        starts = [a for a, _ in clips]
        for s in found:
            tokens[max(0, bisect.bisect_right(starts, (s.start + s.end) / 2) - 1)] += len(s.tokens)
        return [_shifted(_decoded(s), offset) for s in found], info, [n >= limit for n, limit in zip(tokens, limits)]

    def _repaired(self, audio: np.ndarray, language: str, regions: list[Span], spans: list[Span],
                  segments: list[Segment], dense: list[bool], budget: RepairBudget) -> list[Segment]:
        """The windows' ``segments``, decoded again in two rounds where that covers more speech:
        first the holes of all the windows, together, with timestamps (Whisper's usual mode; a
        clip that ends in a pause ends its text there); then, one by one and sequentially, each
        window whose text still loops or leaves a hole, or that lost most of its speech. Each
        round spends passes from ``budget``; what it cannot pay for stays as it is, with its
        loops cut to their first round."""
        speech = _speech_of(spans, regions)
        by_window = _by_span(segments, spans)
        clips = [[] if looped or loops(found, window) or _mostly_lost(window, found) else hole_clips(window, found)
                 for window, found, looped in zip(speech, by_window, dense)]
        clips = _paid_for(clips, budget)
        todo = [clip for window in clips for clip in window]
        again = iter(())
        if todo:
            redecoded, _, dense_again = self._decode_together(audio, todo, _speech_of(todo, regions), language,
                                                              timestamps=True)
            again = iter(zip(_by_span(redecoded, todo), dense_again))
        out: list[Segment] = []
        for span, window, found, window_clips, looped in zip(spans, speech, by_window, clips, dense):
            for clip in window_clips:
                clip_found, clip_looped = next(again)
                if not clip_looped:
                    found = _replaced(found, clip, window, clip_found)
            looping = looped or loops(found, window)
            if (looping or holes(window, found)) and window_clips != [span]:
                sequential = self._decode(audio, *span, language, window, budget, looped_at_zero=looping)
                if sequential is not None:
                    found = _replaced(found, span, window, sequential)
            # A loop nothing replaced is cut to its first round; Whisper writes text into pauses
            # (a "Thank you." after the speech ends): drop it.
            out += [s for s in cut(found, window) if in_speech(s, window)]
        return out

    def _decode(self, audio: np.ndarray, start: float, end: float, language: str, speech: list[Span],
                budget: RepairBudget, *, looped_at_zero: bool = False) -> list[Segment] | None:
        """Sequential decoding of ``start``-``end``: timestamps, seeking on after an early end
        of text, the temperature fallback on a low log-probability or a loop, with as many
        temperatures as ``budget`` pays for (None: it pays for none). A loop is what
        ``workers.engines.loops`` calls one, not faster-whisper's compression ratio: a speaker
        who says a sentence again compresses as well as a loop. No prompt: given the text
        before, Whisper base was seen to repeat its last phrase through the whole window. A
        window whose text ``looped_at_zero`` (the first decoding, at temperature 0, looped)
        starts at the next temperature: at 0 again it loops again, and the pass is spent for
        nothing (and each sequential decoding encodes its window again)."""
        temperatures, best = FALLBACK_TEMPERATURES[1:] if looped_at_zero else FALLBACK_TEMPERATURES, None
        while temperatures:
            granted = budget.take(len(temperatures))
            if not granted:
                budget.refused()
                break
            found, hottest = self._decode_once(audio, start, end, language, speech, temperatures[:granted], budget)
            if best is None or _quality(speech, found) > _quality(speech, best):
                best = found
            if not loops(found, speech):
                break
            temperatures = temperatures[temperatures.index(hottest) + 1 :]
        return best

    def _decode_once(self, audio: np.ndarray, start: float, end: float, language: str, speech: list[Span],
                     temperatures: Sequence[float], budget: RepairBudget) -> tuple[list[Segment], float]:
        """One sequential decoding with faster-whisper's fallback over ``temperatures`` (paid
        for, one pass each, from ``budget``), and the hottest temperature it used."""
        clip = audio[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        decoding, _ = self._model.transcribe(clip, language=language, beam_size=self._beam_size,
                                             word_timestamps=True, condition_on_previous_text=False,
                                             temperature=list(temperatures), compression_ratio_threshold=None,
                                             max_new_tokens=token_limit(sum(b - a for a, b in speech)))
        found, tried = [], {}
        for segment in decoding:  # seek by seek: once the passes are spent, the decoding stops at its next seek
            if segment.seek not in tried:
                if sum(tried.values()) >= len(temperatures):
                    budget.refused()
                    break
                tried[segment.seek] = temperatures.index(segment.temperature) + 1
            found.append(segment)
        budget.settle(len(temperatures), sum(tried.values()) or 1)
        if len(temperatures) in tried.values() and temperatures[-1] != FALLBACK_TEMPERATURES[-1]:
            budget.refused()  # the fallback may have wanted a temperature more
        hottest = temperatures[max(tried.values(), default=1) - 1]
        return [_shifted(_decoded(s), start) for s in found], hottest


def _speech_of(spans: list[Span], regions: list[Span]) -> list[list[Span]]:
    """The speech ``regions`` inside each span."""
    return [[(max(a, start), min(b, end)) for a, b in regions if a < end and b > start] for start, end in spans]


def _mostly_lost(speech: list[Span], segments: list[Segment]) -> bool:
    return (coverage_of(speech, segments).share or 0.0) < MOSTLY_LOST_SHARE


def _paid_for(clips: list[list[Span]], budget: RepairBudget) -> list[list[Span]]:
    """Each window's hole clips, as many as ``budget`` pays for, in order."""
    granted = budget.take(sum(len(c) for c in clips))
    out = []
    for window in clips:
        out.append(window[:granted])
        granted -= len(out[-1])
    if sum(len(c) for c in out) < sum(len(c) for c in clips):
        budget.refused()
    return out


def even_batches(spans: list[Span], size: int) -> list[list[Span]]:
    """Consecutive windows in as few groups of at most ``size`` as can be, of even sizes
    (9 windows in batches of 8: 5 and 4, not 8 and 1, whose batch would run nearly empty)."""
    count = -(-len(spans) // size)  # ceiling; none for no windows
    if not count:
        return []
    bounds = [round(i * len(spans) / count) for i in range(count + 1)]
    return [spans[a:b] for a, b in zip(bounds, bounds[1:])]


def _by_span(segments: list[Segment], spans: list[Span]) -> list[list[Segment]]:
    """The segments of each span, by their middle: faster-whisper rounds a start to 1 ms, before its span."""
    out: list[list[Segment]] = [[] for _ in spans]
    starts = [a for a, _ in spans]
    for seg in segments:
        out[max(0, bisect.bisect_right(starts, (seg.start + seg.end) / 2) - 1)].append(seg)
    return out


def _replaced(segments: list[Segment], clip: Span, speech: list[Span], again: list[Segment]) -> list[Segment]:
    """``segments`` with their words in ``clip`` given up for ``again``, the clip decoded again,
    where that covers more of its speech."""
    clip_speech = [(max(a, clip[0]), min(b, clip[1])) for a, b in speech if a < clip[1] and b > clip[0]]
    inside, outside = _parted(segments, clip)
    if _quality(clip_speech, again) <= _quality(clip_speech, inside):
        return segments
    log.debug("%.1f-%.1f s decoded again: %d -> %d words", *clip,
              sum(len(s.words) for s in inside), sum(len(s.words) for s in again))
    return sorted(outside + again, key=lambda s: s.start)


def _parted(segments: list[Segment], clip: Span) -> tuple[list[Segment], list[Segment]]:
    """The segments' words inside ``clip`` (by their middle) and those before and after it, as segments."""
    inside, outside = [], []
    for seg in segments:
        if not seg.words:
            (inside if clip[0] <= (seg.start + seg.end) / 2 < clip[1] else outside).append(seg)
            continue
        middles = [(w.start + w.end) / 2 for w in seg.words]
        parts = ([w for w, m in zip(seg.words, middles) if m < clip[0]],
                 [w for w, m in zip(seg.words, middles) if clip[0] <= m < clip[1]],
                 [w for w, m in zip(seg.words, middles) if m >= clip[1]])
        inside += [_kept(seg, parts[1])] if parts[1] else []
        outside += [_kept(seg, words) for words in (parts[0], parts[2]) if words]
    return inside, outside


def _kept(segment: Segment, words: list[Word]) -> Segment:
    """``segment`` itself when it keeps all its words, else cut down to them."""
    return segment if words == segment.words else _with_words(segment, words)


def _with_words(segment: Segment, words: Sequence[Word]) -> Segment:
    """``segment`` cut down to ``words`` (at least one): its times and text are theirs."""
    return replace(segment, start=words[0].start, end=max(words[-1].end, words[0].start),
                   text="".join(w.word for w in words).strip(), words=list(words))


def _decoded(segment) -> Segment:
    return decoded_segment(segment.start, segment.end, segment.text, segment.avg_logprob, segment.no_speech_prob,
                           [(w.start, w.end, w.word, w.probability) for w in (segment.words or [])])


def _quality(speech: list[Span], segments: list[Segment]) -> tuple[bool, float]:
    """A text that loops loses (a loop's words are spread over the whole window, so it covers
    speech well); then the one that covers more speech."""
    return not loops(segments, speech), coverage_of(speech, segments).covered_seconds


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


class OpenAIWhisperEngine:
    """openai-whisper from a local ``.pt`` checkpoint, fed the decoded array (no ffmpeg binary)."""

    @classmethod
    def from_settings(cls, stt: SttSettings, model_path: Path) -> "OpenAIWhisperEngine":
        return cls(model_path, device=stt.device, beam_size=stt.beam_size, language=stt.language,
                   segment_max_seconds=stt.segment_max_seconds)

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "auto",
        beam_size: int = 5,
        language: str = "",
        segment_max_seconds: float = 12.0,
    ) -> None:
        import whisper

        if not model_path.is_file():
            raise ConfigError(f"no openai-whisper checkpoint at {model_path}; set STT_MODEL to a .pt file")
        self.device = torch_device(device)
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
                          coverage_of(speech_regions(audio), raw))


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
            out += [_with_words(segment, piece) for piece in _split_long(sentence, max_seconds)]
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
