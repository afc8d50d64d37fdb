"""The work per file is bounded, whatever the audio holds (issue 21 §1), and repetition that
follows the speaker's pauses is speech, not a loop (§2).

The bound is counted in decoder calls and tokens, never in seconds: the speed it gives is
measured by ``python -m bench throughput``.
"""

from __future__ import annotations


import numpy as np
import pytest

from tests.audio_factory import babble, music, noise
from tests.external_data import external
from workers.core.contracts import Segment, Word
from workers.engines.loops import cut, loops, repeats_itself
from workers.engines.repair_budget import MAX_NEW_TOKENS, RepairBudget, token_limit
from workers.processing.audio import SAMPLE_RATE, decode

# URDU talk-show clips that Whisper base hears as Hindi and decodes as a loop of Devanagari
# letters or words; before the budget each cost 48-68 s of STT on 2 cores (issue 21).
HOSTILE_URDU = ("SM24_F34_S046.flac", "SM24_F4_S016.flac", "SF6_F13_H037.flac")


class _CountsDecoding:
    """A CTranslate2 Whisper model that counts its decoder calls and the tokens they write."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = self.tokens = self.longest = self.sampled = 0

    def generate(self, *args, **kwargs):
        out = self.inner.generate(*args, **kwargs)
        self.calls += 1
        self.sampled += kwargs.get("num_hypotheses", 1) > 1  # the temperature fallback
        lengths = [len(s) for r in out for s in r.sequences_ids]
        self.tokens += sum(lengths)
        self.longest = max([self.longest, *lengths])
        return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture(scope="module")
def counted(base_settings):
    from workers.engines.stt import FasterWhisperEngine

    engine = FasterWhisperEngine(base_settings.stt_model_path, device="cpu", batch_size=8, repair_passes=2)
    engine._model.model = _CountsDecoding(engine._model.model)
    return engine


def _transcribed(engine, audio: np.ndarray):
    counter = engine._model.model
    counter.calls = counter.tokens = counter.longest = counter.sampled = 0
    return engine.transcribe(audio), counter


def test_a_decoding_may_write_tokens_in_proportion_to_its_speech() -> None:
    assert token_limit(0.0) == 32 and token_limit(2.0) == 80
    assert token_limit(30.0) == MAX_NEW_TOKENS, "never past Whisper's own limit"


def test_the_repair_budget_is_pooled_over_the_file_and_says_when_it_ran_out() -> None:
    budget = RepairBudget.for_windows(3, 2)
    assert budget.take(4) == 4 and budget.take(6) == 2 and budget.left == 0
    budget.settle(2, 1)
    assert budget.left == 1 and not budget.ran_out
    assert budget.take(2) == 1
    budget.refused()
    assert budget.ran_out


@pytest.mark.parametrize("name", HOSTILE_URDU)
def test_a_clip_that_whisper_decodes_as_a_loop_costs_a_bounded_number_of_passes(counted, name: str) -> None:
    audio = decode(external(f"urdu/audio/{name}"), max_seconds=60).samples
    t, counter = _transcribed(counted, audio)
    # One window: its first decoding, then at most its 2 repair passes (a sequential decoding's
    # seek that the passes no longer pay for ends it, decoded once more at most).
    assert counter.calls <= 1 + 2 * 2, counter.calls
    assert counter.longest <= token_limit(len(audio) / SAMPLE_RATE), "no decoding runs on to 448 tokens"
    text = " ".join(s.text for s in t.segments)
    assert not repeats_itself(text), f"the loop is cut: {text}"
    assert t.repair_budget_spent in (True, False)


@pytest.mark.parametrize("make", [lambda: noise(20.0, amplitude=0.2), lambda: music(20.0), babble],
                         ids=["noise", "music", "babble"])
def test_noise_music_and_babble_cost_a_bounded_number_of_passes(counted, make) -> None:
    audio = make()
    t, counter = _transcribed(counted, audio)
    windows = -(-len(audio) // (30 * SAMPLE_RATE))
    assert counter.calls <= windows * (1 + 2 * 2), counter.calls
    assert counter.longest <= MAX_NEW_TOKENS
    assert not repeats_itself(" ".join(s.text for s in t.segments))


def test_with_no_repair_passes_a_looping_clip_is_decoded_once_loop_cut_and_flagged(base_settings) -> None:
    from workers.engines.stt import FasterWhisperEngine

    engine = FasterWhisperEngine(base_settings.stt_model_path, device="cpu", batch_size=8, repair_passes=0)
    engine._model.model = _CountsDecoding(engine._model.model)
    t, counter = _transcribed(engine, decode(external(f"urdu/audio/{HOSTILE_URDU[0]}"), max_seconds=60).samples)
    assert counter.calls == 1
    assert t.repair_budget_spent is True
    assert not repeats_itself(" ".join(s.text for s in t.segments))


def _said(*rounds: tuple[float, str]) -> list[Segment]:
    """One segment whose words are each round's words, 0.3 s apart, from its start time."""
    words = [Word(start + 0.3 * k, start + 0.3 * k + 0.25, f" {w}", 0.9)
             for start, sentence in rounds for k, w in enumerate(sentence.split())]
    return [Segment(0, words[0].start, words[-1].end, "".join(w.word for w in words).strip(), -0.2, 0.1, words)]


SENTENCE = "Kids are talking by the door."


def test_a_sentence_said_again_after_each_pause_is_speech_not_a_loop() -> None:
    regions = [(0.2, 2.2), (3.0, 5.0), (6.1, 8.1), (9.0, 11.0)]
    said = _said(*((a + 0.1, SENTENCE) for a, _ in regions))
    assert repeats_itself(said[0].text), "as text alone it looks like a loop"
    assert not loops(said, regions)
    assert cut(said, regions) == said


def test_a_phrase_repeated_with_no_regard_for_the_pauses_is_a_loop_cut_to_its_first_round() -> None:
    regions = [(0.0, 10.0)]  # one stretch of speech, the text says it 4 times over it
    said = _said(*((0.5 + 1.8 * k, SENTENCE) for k in range(4)))
    assert loops(said, regions)
    kept = cut(said, regions)
    assert [s.text for s in kept] == [SENTENCE]


def test_letters_that_loop_inside_a_word_are_a_loop_cut_to_one_round() -> None:
    words = [Word(0.1, 0.5, " आजिली", 0.5), Word(0.6, 1.8, " सादव" + "़" * 20, 0.2)]
    said = [Segment(0, 0.1, 1.8, "आजिली सादव" + "़" * 20, -1.0, 0.2, words)]
    assert loops(said, [(0.0, 2.0)])
    assert cut(said, [(0.0, 2.0)])[0].text == "आजिली सादव़"


def test_repeated_sentences_of_real_speakers_are_transcribed_each_time_with_no_temperature_fallback(counted) -> None:
    """Eight RAVDESS clips (two sentences, each said four times running by different actors)
    joined with their own pauses: every saying is in the transcript (batched decoding keeps
    two of the first four; decoded again, the four are no loop), and nothing is decoded again
    as a loop, with the temperature fallback."""
    folder = external("ravdess/audio")
    names = sorted(p.name for p in folder.glob("03-01-0[1-2]-01-0[12]-01-0[1-4].flac"))[:8]
    assert len(names) == 8
    audio = np.concatenate([decode(folder / n, max_seconds=60).samples for n in names])
    t, counter = _transcribed(counted, audio)
    text = " ".join(s.text for s in t.segments).lower()
    kids, dogs = sum(n.split("-")[4] == "01" for n in names), sum(n.split("-")[4] == "02" for n in names)
    assert text.count("talking by the door") >= kids - 1 and text.count("sitting by the door") >= dogs - 1, text
    assert counter.sampled == 0, "no temperature fallback"
    assert t.repair_budget_spent is False


def test_a_repetition_found_mid_sentence_is_still_told_by_where_its_sentences_start() -> None:
    """The run is found from "the door. Kids are talking by", whose rounds start mid-sentence;
    the sentences start at the regions."""
    regions = [(0.0, 2.0), (3.0, 5.0), (6.0, 8.0), (9.0, 11.0)]
    said = _said((0.1, "Dogs are sitting by the door."), *((a + 0.1, SENTENCE) for a, _ in regions[1:]))
    assert repeats_itself(said[0].text)
    assert not loops(said, regions)


def test_a_first_word_stretched_back_over_the_pause_still_starts_its_region() -> None:
    """The aligner times a repeat's first word from the end of the sentence before it."""
    regions = [(0.0, 2.0), (3.5, 5.5), (7.0, 9.0)]
    said = _said(*((a + 0.1, SENTENCE) for a, _ in regions))
    words = said[0].words
    for k in (6, 12):  # "Kids" of the 2nd and 3rd rounds, stretched back to the last "door."
        words[k] = Word(words[k - 1].end, words[k].end, words[k].word, 0.5)
    assert not loops(said, regions)


@pytest.mark.parametrize("spent, merged", [((False, True), True), ((False, False), False), ((None, None), None)])
def test_a_split_recording_says_the_budget_ran_out_when_any_channel_ran_out(spent, merged) -> None:
    from workers.processing.channels import transcribe_channels
    from workers.core.engines import Transcript
    from workers.processing.channels import ChannelPlan

    class Engine:
        def __init__(self) -> None:
            self.flags = iter(spent)

        def transcribe(self, audio: np.ndarray) -> Transcript:
            return Transcript("en", 1.0, len(audio) / SAMPLE_RATE, [], repair_budget_spent=next(self.flags))

    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    plan = ChannelPlan((silence, silence), ["agent", "customer"])
    assert transcribe_channels(Engine(), plan).repair_budget_spent is merged
