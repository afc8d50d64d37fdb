"""Speech coverage: holes between VAD's speech and the decoded words are measured and decoded again."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.audio_factory import SAMPLES
from workers.processing.audio import SAMPLE_RATE, decode
from workers.core.contracts import Segment, Word
from workers.engines.coverage import coverage_of, hole_clips, holes, in_speech, uncovered, windows
from workers.core.engines import Coverage
from workers.engines.loops import repeats_itself


def _segment(*words: tuple[float, float]) -> Segment:
    return Segment(0, words[0][0], words[-1][1], "x", -0.1, 0.0, [Word(a, b, " w", 0.9) for a, b in words])


def test_speech_without_words_is_uncovered_and_counted() -> None:
    regions = [(0.0, 10.0), (12.0, 14.0)]
    segments = [_segment((0.0, 1.0), (1.2, 3.0)), _segment((7.0, 10.0))]
    assert uncovered(regions, segments) == [(3.5, 6.5), (12.0, 14.0)]
    assert holes(regions, segments) == [(3.5, 6.5), (12.0, 14.0)]
    assert coverage_of(regions, segments).share == pytest.approx(7 / 12)
    assert coverage_of(regions, segments + [_segment((12.3, 13.7))]).share == pytest.approx(9 / 12)


def test_a_word_timing_error_is_no_hole() -> None:
    regions = [(0.0, 5.0)]  # VAD pads its regions; words start late and end early
    segments = [_segment((0.4, 2.0), (2.8, 4.6))]
    assert holes(regions, segments) == []
    assert coverage_of(regions, segments).share == 1.0


def test_a_word_stretched_over_lost_speech_covers_3_seconds_of_it_at_most() -> None:
    regions = [(0.0, 12.0)]  # the aligner spread "We" over a sentence the text lacks
    segments = [_segment((0.0, 0.5)), _segment((0.5, 10.0)), _segment((10.0, 11.5))]
    assert holes(regions, segments) == [(4.0, 9.5)]


def test_a_hole_is_decoded_again_from_pause_to_pause_with_the_words_timed_over_it() -> None:
    speech = [(0.0, 3.0), (3.5, 6.0), (6.5, 9.0), (9.5, 12.0), (20.0, 22.0), (22.5, 25.0), (25.5, 28.0)]
    stretched = _segment((0.5, 2.5), (3.6, 7.2), (10.0, 11.5))  # the word over 3.6-7.2 s hides 7-9 s
    later = _segment((20.2, 21.8), (25.6, 27.8))  # 22.5-25 s has no words
    assert holes(speech, [stretched, later]) == [(7.1, 9.0), (22.5, 25.0)]
    assert hole_clips(speech, [stretched, later]) == [(3.5, 12.0), (20.0, 28.0)]


def test_no_speech_has_no_coverage_and_coverages_add_up() -> None:
    assert Coverage().share is None
    total = Coverage(10.0, 9.0) + Coverage(10.0, 10.0)
    assert total.share == pytest.approx(0.95)


def test_windows_keep_the_pauses_and_stay_within_30_seconds() -> None:
    regions = [(0.5, 10.0), (11.0, 25.0), (26.0, 40.0), (41.0, 42.0)]
    assert windows(regions) == [(0.5, 25.0), (26.0, 42.0)]


@pytest.mark.parametrize("text, loops", [
    ("produced by the French book, produced by the French book, produced by the French book,", True),
    ("Thank you. Thank you. Thank you.", True),
    ("the the the the", True),
    ("No, no, no. I said the other one.", False),
    ("Good morning. Thank you for calling. Good morning. Thank you for calling.", False),
])
def test_a_loop_is_told_from_speech_that_repeats(text: str, loops: bool) -> None:
    assert repeats_itself(text) is loops


def test_text_in_a_pause_is_not_speech() -> None:
    regions = [(0.0, 4.0)]
    assert in_speech(_segment((1.0, 2.0)), regions)
    assert not in_speech(_segment((6.0, 7.0)), regions)


def _speech_with_a_pause() -> np.ndarray:
    speech = decode(SAMPLES / "en_support_call.flac", max_seconds=600).samples
    return np.concatenate([speech, np.zeros(2 * SAMPLE_RATE, dtype=np.float32), speech])


class _DropsWords:
    """The batched pipeline, losing every word that starts in ``lost`` (an early end of text)."""

    def __init__(self, pipeline, lost: tuple[float, float]) -> None:
        self.pipeline, self.lost = pipeline, lost

    def transcribe(self, audio, **options):
        found, info = self.pipeline.transcribe(audio, **options)
        kept = []
        for seg in found:
            words = [w for w in seg.words if not self.lost[0] <= w.start < self.lost[1]]
            if words:
                kept.append(dataclasses.replace(seg, words=words, text="".join(w.word for w in words),
                                                    start=words[0].start, end=words[-1].end))
        return kept, info


def test_a_hole_left_by_batched_decoding_is_decoded_again(fast_settings) -> None:
    from workers.engines.stt import FasterWhisperEngine

    audio = _speech_with_a_pause()
    engine = FasterWhisperEngine(fast_settings.stt_model_path, device="cpu", batch_size=8)
    whole = engine.transcribe(audio)
    assert whole.coverage.share >= 0.99

    engine._batched = _DropsWords(engine._batched, lost=(27.0, 35.0))  # "I understand ... really sorry"
    repaired = engine.transcribe(audio)
    text = " ".join(s.text for s in repaired.segments).lower()
    assert text.count("really sorry") == 2 and text.count("damaged") == 2, text
    assert repaired.coverage.share >= 0.99
    assert any(w.start >= 27.0 and w.end <= 35.0 for s in repaired.segments for w in s.words), "timestamps kept"


class _LosesItAgain(_DropsWords):
    """As ``_DropsWords``, and the holes decoded again (with timestamps) come back empty."""

    def transcribe(self, audio, **options):
        if not options["without_timestamps"]:
            found, info = self.pipeline.transcribe(audio, **options)
            return [], info
        return super().transcribe(audio, **options)


def test_a_hole_that_decoding_again_leaves_is_decoded_with_its_whole_window(fast_settings) -> None:
    from workers.engines.stt import FasterWhisperEngine

    engine = FasterWhisperEngine(fast_settings.stt_model_path, device="cpu", batch_size=8)
    engine._batched = _LosesItAgain(engine._batched, lost=(27.0, 35.0))
    t = engine.transcribe(_speech_with_a_pause())
    text = " ".join(s.text for s in t.segments).lower()
    assert text.count("really sorry") == 2 and text.count("damaged") == 2, text
    assert t.coverage.share >= 0.99


def test_silence_has_no_coverage_and_speech_has_one_between_0_and_1(tiny_stt) -> None:
    assert tiny_stt.transcribe(np.zeros(5 * SAMPLE_RATE, dtype=np.float32)).coverage.share is None
    coverage = tiny_stt.transcribe(_speech_with_a_pause()).coverage.share
    assert 0.0 <= coverage <= 1.0


def test_a_window_that_says_the_same_segment_again_and_again_is_decoded_again(fast_settings) -> None:
    from workers.engines.stt import FasterWhisperEngine

    class Loops:
        def transcribe(self, audio, **options):
            # Words over all of the speech: no hole, only the loop calls for decoding again.
            return [_FakeSegment(2.0 * i, 2.0 * i + 2.0, " Thank you.") for i in range(10)], _FakeInfo()

    audio = decode(SAMPLES / "en_support_call.flac", max_seconds=600).samples
    engine = FasterWhisperEngine(fast_settings.stt_model_path, device="cpu", batch_size=8)
    engine._batched = Loops()
    text = " ".join(s.text for s in engine.transcribe(audio).segments).lower()
    assert "thank you. thank you. thank you." not in text
    assert "customer support" in text and "shipping" in text


@dataclasses.dataclass
class _FakeWord:
    start: float
    end: float
    word: str
    probability: float = 0.9


@dataclasses.dataclass
class _FakeSegment:
    start: float
    end: float
    text: str
    avg_logprob: float = -0.2
    no_speech_prob: float = 0.1
    tokens: tuple[int, ...] = (1, 2, 3)

    @property
    def words(self) -> list[_FakeWord]:
        middle = (self.start + self.end) / 2
        return [_FakeWord(self.start, middle, " Thank"), _FakeWord(middle, self.end, " you.")]


@dataclasses.dataclass
class _FakeInfo:
    language: str = "en"
    language_probability: float = 1.0


def test_speech_found_block_by_block_is_the_speech_found_in_one_go() -> None:
    from workers.engines.coverage import speech_regions

    speech = decode(SAMPLES / "en_support_call.flac", max_seconds=600).samples
    gap = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    audio = np.concatenate([speech, gap, speech, gap, speech, gap])
    whole = speech_regions(audio, block_seconds=10_000)
    blocks = speech_regions(audio, block_seconds=20)  # cut in the pauses between the three readings
    assert len(blocks) == len(whole) >= 3
    assert all(abs(a - c) < 0.05 and abs(b - d) < 0.05 for (a, b), (c, d) in zip(blocks, whole))
    assert blocks[-1][1] > 55.0, "regions are in the audio's time, not the block's"
