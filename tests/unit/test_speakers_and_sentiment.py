"""Who said it, and how: channels, speaker attribution, text and fused sentiment, per-speaker summaries."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.audio_factory import noise
from workers.processing.audio import SAMPLE_RATE, DecodedAudio
from workers.processing.channels import channel_names, different_talkers, plan
from workers.core.contracts import EmotionWindow, Segment, SpeakerTurn, Word
from workers.core.errors import ConfigError
from workers.processing.speakers import attribute, overlaps, turn_count
from workers.processing.text_sentiment import fused_sentiment, text_sentiment

from .test_join import do_merge, ser, stt


def bursts(pattern: str, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Noise where pattern has '1', silence where '0': a talker's loudness over time."""
    return np.concatenate([noise(seconds, amplitude=0.3, seed=seed + k) if c == "1" else np.zeros(
        int(seconds * SAMPLE_RATE), np.float32) for k, c in enumerate(pattern)])


def decoded(*channels: np.ndarray) -> DecodedAudio:
    return DecodedAudio(np.mean(channels, axis=0).astype(np.float32), "wav", SAMPLE_RATE, len(channels), channels)


def test_a_call_with_one_talker_per_channel_is_split_and_named() -> None:
    agent, customer = bursts("1100110011"), bursts("0011001100", seed=50)
    assert different_talkers(agent, customer)
    split = plan(decoded(agent, customer), "auto", ("agent", "customer"))
    assert split.names == ["agent", "customer"] and len(split.signals) == 2
    assert plan(decoded(agent, customer), "mix").names is None


@pytest.mark.parametrize("second", ["same", "quieter copy", "silent"])
def test_channels_that_are_one_signal_or_silent_are_mono(second: str) -> None:
    first = bursts("1100110011")
    other = {"same": first, "quieter copy": 0.3 * first, "silent": np.zeros_like(first)}[second]
    assert plan(decoded(first, other), "auto").names is None


def test_surround_is_mixed_unless_split_is_asked_for() -> None:
    six = [bursts("1010101010", seed=k * 10) for k in range(6)]
    assert plan(decoded(*six), "auto").names is None
    assert plan(decoded(*six), "split", ("a", "b")).names == ["a", "b", "CH3", "CH4", "CH5", "CH6"]
    assert channel_names(2) == ["CH1", "CH2"]
    with pytest.raises(ConfigError, match="CHANNEL_MODE"):
        plan(decoded(*six), "stereo")


def words(*spec: tuple[float, float, str]) -> list[Word]:
    return [Word(a, b, w, 0.9) for a, b, w in spec]


def test_a_segment_spanning_a_speaker_change_is_cut_there() -> None:
    segment = Segment(7, 0.0, 4.0, "Hello there. Hi!", -0.1, 0.0,
                      words((0.0, 0.5, " Hello"), (0.5, 1.4, " there."), (2.1, 2.6, " Hi!")))
    turns = [SpeakerTurn(0.0, 1.6, "A"), SpeakerTurn(1.9, 3.0, "B")]
    first, second = attribute([segment], turns, None)
    assert (first.text, first.speaker, first.start, first.end, first.id) == ("Hello there.", "S1", 0.0, 1.4, 0)
    assert (second.text, second.speaker, second.start, second.id) == ("Hi!", "S2", 2.1, 1)
    assert {w.speaker for w in first.words} == {"S1"} and {w.speaker for w in second.words} == {"S2"}


def test_a_short_blip_of_another_speaker_inside_a_turn_is_noise() -> None:
    segment = Segment(0, 0.0, 3.0, "a b c", -0.1, 0.0, words((0.0, 1.0, " a"), (1.0, 1.3, " b"), (1.3, 3.0, " c")))
    turns = [SpeakerTurn(0.0, 1.0, "X"), SpeakerTurn(1.0, 1.3, "Y"), SpeakerTurn(1.3, 3.0, "X")]
    (only,) = attribute([segment], turns, None)
    assert only.speaker == "S1" and only.text == "a b c"


def test_speakers_are_named_in_order_of_first_appearance_and_words_without_turns_take_the_nearest() -> None:
    segments = [Segment(0, 0.0, 1.0, "x", -0.1, 0.0, words((0.0, 1.0, " x"))),
                Segment(1, 5.0, 6.0, "y", -0.1, 0.0, words((5.0, 6.0, " y")))]
    turns = [SpeakerTurn(0.0, 1.0, "S7"), SpeakerTurn(4.0, 4.5, "S3")]
    assert [s.speaker for s in attribute(segments, turns, None)] == ["S1", "S2"]
    assert [s.speaker for s in attribute(segments, None, None)] == [None, None]


def test_channel_segments_take_the_channel_name_and_turns_and_overlaps_are_counted() -> None:
    segments = [replace(Segment(0, 0.0, 3.0, "a", -0.1, 0.0, []), channel=0),
                replace(Segment(1, 2.0, 4.0, "b", -0.1, 0.0, []), channel=1),
                replace(Segment(2, 5.0, 6.0, "c", -0.1, 0.0, []), channel=0)]
    out = attribute(segments, [], ["agent", "customer"])
    assert [s.speaker for s in out] == ["agent", "customer", "agent"]
    assert turn_count(out, "agent") == 2 and turn_count(out, "customer") == 1
    assert overlaps(out, "customer") == (1, pytest.approx(1.0))  # began while the agent spoke
    assert overlaps(out, "agent") == (0, pytest.approx(1.0))


def test_english_text_gets_vader_sentiment_and_other_languages_none() -> None:
    happy, angry = text_sentiment("Thank you so much, this is great!", "en"), text_sentiment(
        "This is terrible and I hate it.", "en")
    assert happy.label == "POSITIVE" and happy.score > 0.5
    assert angry.label == "NEGATIVE" and angry.score < -0.5
    assert text_sentiment("The box is on the table.", "en").label == "NEUTRAL"
    assert text_sentiment("Das ist wunderbar!", "de") is None and text_sentiment("  ", "en") is None


def test_fused_sentiment_weighs_the_words_more_and_falls_back_to_the_voice() -> None:
    positive_words = text_sentiment("Thank you so much, this is great!", "en")
    assert fused_sentiment(-0.9, positive_words).label == "POSITIVE"  # 0.4*-0.9 + 0.6*0.9 > 0.1
    assert fused_sentiment(-0.9, None).label == "NEGATIVE"
    assert fused_sentiment(None, None) is None
    assert fused_sentiment(0.0, text_sentiment("The box is on the table.", "en")).label == "NEUTRAL"


def test_the_result_carries_speakers_sentiments_and_a_summary_per_speaker() -> None:
    segments = [Segment(0, 0.0, 2.0, "I hate this, it is terrible.", -0.1, 0.0,
                        words((0.0, 1.0, " I hate this,"), (1.0, 2.0, " it is terrible."))),
                Segment(1, 4.0, 8.0, "Thank you, that is wonderful.", -0.1, 0.0,
                        words((4.0, 6.0, " Thank you,"), (6.0, 8.0, " that is wonderful.")))]
    windows = [(0.0, 2.0, [1.0, 0.0, 0.0]), (2.0, 4.0, [0.0, 1.0, 0.0]), (4.0, 8.0, [0.0, 1.0, 0.0])]
    partial = replace(ser(windows), speakers=[SpeakerTurn(0.0, 2.5, "a"), SpeakerTurn(3.5, 8.0, "b")])
    result = do_merge(stt(*segments), partial)
    first, second = result.segments
    assert (first.speaker, second.speaker) == ("S1", "S2")
    assert first.text_sentiment.label == "NEGATIVE" and first.fused_sentiment.label == "NEGATIVE"
    assert second.text_sentiment.label == "POSITIVE" and second.fused_sentiment.label == "POSITIVE"
    s1, s2 = result.speakers
    assert (s1.speaker, s1.talk_seconds, s1.share, s1.turns, s1.dominant_emotion) == (
        "S1", pytest.approx(2.5), pytest.approx(2.5 / 7), 1, "angry")  # talk time: the diarized turns
    assert (s2.speaker, s2.talk_seconds, s2.dominant_emotion, s2.text_sentiment.label) == (
        "S2", pytest.approx(4.5), "happy", "POSITIVE")
    assert result.summary.text_sentiment is not None and result.channels is None


def test_channel_windows_score_only_their_own_channel() -> None:
    segments = [replace(Segment(0, 0.0, 2.0, "a", -0.1, 0.0, []), channel=0),
                replace(Segment(1, 0.0, 2.0, "b", -0.1, 0.0, []), channel=1)]
    partial = replace(ser([]), windows=[EmotionWindow(0.0, 2.0, [1.0, 0.0, 0.0], 0),
                                        EmotionWindow(0.0, 2.0, [0.0, 0.0, 1.0], 1)], channels=["agent", "customer"])
    result = do_merge(replace(stt(*segments), channels=["agent", "customer"]), partial)
    assert [(s.speaker, s.emotion.label) for s in result.segments] == [("agent", "angry"), ("customer", "neutral")]
    assert result.channels == ["agent", "customer"]
    assert [(s.speaker, s.channel, s.interruptions) for s in result.speakers] == [("agent", 0, 0), ("customer", 1, 0)]
    assert result.speakers[0].overlap_seconds == pytest.approx(2.0)
