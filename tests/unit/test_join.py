"""Segment ↔ window alignment, the whole-file summary, sentiment mapping, determinism."""

from __future__ import annotations

from dataclasses import replace

import pytest

from workers.core.contracts import (
    Engine, EmotionWindow, Error, Segment, SerPartial, SpeakerTurn, SttPartial, Timing, dumps,
)
from workers.core.errors import ConfigError
from workers.core.jobs import make_job
from workers.processing.join import merge
from workers.processing.sentiment_map import DEFAULT_SENTIMENT_MAP, parse_sentiment_map

JOB = make_job(bucket="b", name="call.wav", generation=5, size=10, content_type="audio/wav", source="upload",
               submitted_at="2026-11-25T10:00:00.000Z")
STT_ENGINE = Engine("faster-whisper", "m", "1", True)
SER_ENGINE = Engine("transformers", "s", "1", False)
LABELS = ["angry", "happy", "neutral"]


def seg(i: int, start: float, end: float) -> Segment:
    return Segment(i, start, end, f"segment {i}", -0.1, 0.01, [])


def stt(*segments: Segment, status="ok", error=None) -> SttPartial:
    return SttPartial(JOB.job_id, status, error, STT_ENGINE, "en", 0.99, 8.0, list(segments),
                      Timing("2026-11-25T10:00:01Z", "2026-11-25T10:00:02Z", 1.0))


def ser(windows: list[tuple[float, float, list[float]]], status="ok", error=None) -> SerPartial:
    return SerPartial(JOB.job_id, status, error, SER_ENGINE, 2.0, 2.0, LABELS,
                      [EmotionWindow(a, b, s) for a, b, s in windows], 8.0)


WINDOWS = [(0.0, 2.0, [1.0, 0.0, 0.0]), (2.0, 4.0, [0.0, 1.0, 0.0]), (4.0, 8.0, [0.0, 0.0, 1.0])]


def do_merge(stt_partial, ser_partial, completed_at="2026-11-25T10:00:03Z", mapping=DEFAULT_SENTIMENT_MAP):
    return merge(JOB, stt_partial, ser_partial, sentiment_map=mapping, pipeline_version="t",
                 completed_at=completed_at)


def scores(result_segment) -> dict[str, float]:
    return {s.label: s.score for s in result_segment.emotion.scores}


def test_each_segment_gets_the_overlap_weighted_mean_of_its_windows() -> None:
    result = do_merge(stt(seg(0, 0.0, 1.0), seg(1, 1.0, 3.0), seg(2, 3.5, 6.0)), ser(WINDOWS))
    first, second, third = result.segments
    assert scores(first) == {"angry": 1.0, "happy": 0.0, "neutral": 0.0}
    assert scores(second) == pytest.approx({"angry": 0.5, "happy": 0.5, "neutral": 0.0})
    assert scores(third) == pytest.approx({"angry": 0.0, "happy": 0.2, "neutral": 0.8})
    assert (first.emotion.label, first.emotion.sentiment) == ("angry", "NEGATIVE")
    assert (third.emotion.label, third.emotion.sentiment) == ("neutral", "NEUTRAL")


def test_a_segment_past_the_last_window_takes_the_nearest_one() -> None:
    result = do_merge(stt(seg(0, 8.2, 8.6)), ser(WINDOWS))
    assert result.segments[0].emotion.label == "neutral"


def test_summary_is_weighted_by_segment_duration() -> None:
    # 1 s angry, 3 s neutral (4..7 s): the distribution is 25 % / 75 %.
    result = do_merge(stt(seg(0, 0.0, 1.0), seg(1, 4.0, 7.0)), ser(WINDOWS))
    dist = {s.label: s.score for s in result.summary.distribution}
    assert dist == pytest.approx({"angry": 0.25, "happy": 0.0, "neutral": 0.75})
    assert result.summary.dominant_emotion == "neutral"
    assert result.summary.speech_seconds == pytest.approx(4.0)
    by_sentiment = {s.label: s.score for s in result.summary.sentiment_distribution}
    assert by_sentiment == pytest.approx({"POSITIVE": 0.0, "NEGATIVE": 0.25, "NEUTRAL": 0.75})


def test_silence_has_no_segments_and_an_empty_summary() -> None:
    result = do_merge(stt(), ser(WINDOWS))
    assert result.status == "ok" and result.segments == []
    assert result.summary.dominant_emotion is None and result.summary.distribution == []


def test_sentiment_map_is_configurable() -> None:
    mapping = parse_sentiment_map("neutral=POSITIVE, Angry=neutral")
    result = do_merge(stt(seg(0, 0.0, 1.0), seg(1, 5.0, 6.0)), ser(WINDOWS), mapping=mapping)
    assert [s.emotion.sentiment for s in result.segments] == ["NEUTRAL", "POSITIVE"]
    with pytest.raises(ConfigError, match="label=POSITIVE"):
        parse_sentiment_map("angry=FURIOUS")


def test_same_partials_give_the_same_bytes_apart_from_timings() -> None:
    a = do_merge(stt(seg(0, 0.0, 3.0)), ser(WINDOWS), completed_at="2026-11-25T10:00:03Z")
    b = do_merge(stt(seg(0, 0.0, 3.0)), ser(WINDOWS), completed_at="2026-11-25T11:30:00Z")
    assert dumps(a) != dumps(b)
    assert dumps(a).split('"timings"')[0] == dumps(b).split('"timings"')[0]
    assert dumps(a.__class__(**{**a.__dict__, "timings": b.timings})) == dumps(b)


def test_a_failed_partial_fails_the_result_but_keeps_what_is_known() -> None:
    error = Error("too_long", "audio is 20000 s long")
    result = do_merge(stt(seg(0, 0.0, 1.0)), ser([], status="failed", error=error))
    assert result.status == "failed" and result.error == error
    assert result.segments[0].text == "segment 0" and result.segments[0].emotion is None
    assert result.summary is None
    assert result.engines.ser.trained is False


def test_a_ser_partial_whose_windows_do_not_match_its_labels_gives_a_failed_result() -> None:
    broken = ser([(0.0, 2.0, [1.0, 0.0]), (2.0, 4.0, [0.0, 1.0, 0.0])])
    result = do_merge(stt(seg(0, 0.0, 3.0)), broken)
    assert result.status == "failed" and result.error.code == "invalid_ser_partial"
    assert [s.text for s in result.segments] == ["segment 0"] and result.segments[0].emotion is None


def test_sentiment_shares_stay_within_one_and_speech_seconds_are_real() -> None:
    # Multi-label scores (sigmoid) need not sum to 1: two negative labels at 0.9 each.
    multi = SerPartial(JOB.job_id, "ok", None, SER_ENGINE, 2.0, 2.0, ["angry", "sad", "neutral"],
                       [EmotionWindow(0.0, 8.0, [0.9, 0.9, 0.1])], 8.0)
    result = do_merge(stt(seg(0, 1.0, 3.0), seg(1, 4.0, 4.0)), multi)
    shares = {s.label: s.score for s in result.summary.sentiment_distribution}
    assert shares["NEGATIVE"] == 1.0 and 0 <= shares["NEUTRAL"] <= 1
    assert result.summary.speech_seconds == 2.0  # the zero-length segment adds no speech


def test_labels_without_a_sentiment_are_named_when_the_pipeline_is_built(caplog) -> None:
    from workers.composition import warn_unmapped_labels

    class GenericLabels:
        labels = ["LABEL_0", "happy", "LABEL_1"]

    with caplog.at_level("WARNING", logger="workers.composition"):
        warn_unmapped_labels(GenericLabels(), "")
    assert "['LABEL_0', 'LABEL_1']" in caplog.text and "SENTIMENT_MAP" in caplog.text


def test_overlapping_mono_turns_reach_the_result_named_as_the_segments_with_their_overlap() -> None:
    from dataclasses import replace

    from workers.core.contracts import SpeakerTurn

    # the diarizer's own names (S1 first in the audio) differ from the transcript's order
    turns = [SpeakerTurn(0.0, 1.0, "S1"), SpeakerTurn(1.0, 5.0, "S2"), SpeakerTurn(4.0, 8.0, "S1")]
    result = do_merge(stt(seg(0, 1.2, 3.8), seg(1, 5.2, 7.5)), replace(ser(WINDOWS), speakers=turns))
    assert [s.speaker for s in result.segments] == ["S1", "S2"]
    assert [(t.start, t.end, t.speaker) for t in result.turns] == [(0.0, 1.0, "S2"), (1.0, 5.0, "S1"), (4.0, 8.0, "S2")]
    by_name = {s.speaker: s for s in result.speakers}
    assert by_name["S1"].overlap_seconds == pytest.approx(1.0) and by_name["S2"].overlap_seconds == pytest.approx(1.0)
    assert by_name["S2"].interruptions == 1 and by_name["S1"].interruptions == 0


def test_a_segment_goes_to_whoever_talks_most_over_it_when_turns_overlap() -> None:
    from workers.core.contracts import SpeakerTurn
    from workers.processing.speakers import speaker_at

    # A has the longest single turn over the segment, B talks longer over it in two turns
    turns = [SpeakerTurn(0.0, 2.5, "A"), SpeakerTurn(0.0, 1.5, "B"), SpeakerTurn(1.6, 3.0, "B")]
    assert speaker_at(0.0, 3.0, turns) == "B"


def test_a_segment_that_bridges_a_pause_the_diarizer_hears_is_cut_there() -> None:
    from workers.core.contracts import SpeakerTurn, Word
    from workers.processing.speakers import attribute

    words = [Word(0.0, 0.8, " Hello", 0.9), Word(0.8, 1.9, " there.", 0.9), Word(4.0, 4.6, " Anyway,", 0.9),
             Word(4.6, 5.5, " next.", 0.9)]
    bridging = Segment(0, 0.0, 5.5, "Hello there. Anyway, next.", -0.1, 0.01, words)
    turns = [SpeakerTurn(0.0, 2.0, "S1"), SpeakerTurn(3.9, 5.6, "S1")]
    out = attribute([bridging], turns, None)
    assert [(s.start, s.end, s.text, s.speaker) for s in out] == [(0.0, 1.9, "Hello there.", "S1"),
                                                                  (4.0, 5.5, "Anyway, next.", "S1")]
    # without a pause in the diarizer's speech the segment stays whole
    assert len(attribute([bridging], [SpeakerTurn(0.0, 5.6, "S1")], None)) == 1


def test_a_diarized_segment_spans_the_speech_the_diarizer_hears_not_the_silence_the_transcript_bridges() -> None:
    from workers.core.contracts import SpeakerTurn, Word
    from workers.processing.speakers import attribute

    # Whisper's segment starts a second before anyone talks and ends well after; its words do not
    words = [Word(1.2, 1.8, " Hello", 0.9), Word(1.8, 2.6, " there.", 0.9)]
    wide = Segment(0, 0.2, 4.5, "Hello there.", -0.1, 0.01, words)
    [out] = attribute([wide], [SpeakerTurn(1.1, 2.8, "S1")], None)
    assert (out.start, out.end) == (pytest.approx(1.1), pytest.approx(2.8))
    # trimmed to speech, never inside a word the transcript heard
    [out] = attribute([wide], [SpeakerTurn(1.5, 2.0, "S1")], None)
    assert (out.start, out.end) == (pytest.approx(1.2), pytest.approx(2.6))
    # a segment without words is trimmed too; one the diarizer hears nothing under stays as it is
    [bare] = attribute([Segment(0, 0.2, 4.5, "Hello there.", -0.1, 0.01, [])], [SpeakerTurn(1.1, 2.8, "S1")], None)
    assert (bare.start, bare.end) == (pytest.approx(1.1), pytest.approx(2.8))
    [unheard] = attribute([replace(wide, words=[])], [SpeakerTurn(6.0, 7.0, "S1")], None)
    assert (unheard.start, unheard.end) == (0.2, 4.5)
    # two channels analysed apart keep the transcript's segments
    [kept] = attribute([replace(wide, channel=0)], [SpeakerTurn(1.1, 2.8, "agent", 0)], ["agent"])
    assert (kept.start, kept.end) == (0.2, 4.5)


def test_a_diarized_speakers_talk_time_and_share_come_from_their_turns() -> None:
    from workers.core.contracts import SpeakerTurn

    # the transcript's segments bridge silence at both ends; the diarizer hears 1.0 s and 2.0 s of speech,
    # and S2 also talks for 1.0 s that nobody transcribed
    turns = [SpeakerTurn(1.0, 2.0, "a"), SpeakerTurn(4.0, 6.0, "b"), SpeakerTurn(7.0, 8.0, "b")]
    result = do_merge(stt(seg(0, 0.0, 3.0), seg(1, 3.5, 6.5)), replace(ser(WINDOWS), speakers=turns))
    by_name = {s.speaker: s for s in result.speakers}
    assert by_name["S1"].talk_seconds == pytest.approx(1.0) and by_name["S2"].talk_seconds == pytest.approx(3.0)
    assert by_name["S1"].share == pytest.approx(0.25) and by_name["S2"].share == pytest.approx(0.75)
    # channels analysed apart keep the talk time of their segments
    channel_seg = replace(seg(0, 0.0, 3.0), channel=0)
    apart = replace(ser(WINDOWS), channels=["agent"], speakers=[SpeakerTurn(1.0, 2.0, "agent", 0)],
                    windows=[EmotionWindow(0.0, 8.0, [0.0, 0.0, 1.0], 0)])
    [agent] = do_merge(replace(stt(channel_seg), channels=["agent"]), apart).speakers
    assert agent.talk_seconds == pytest.approx(3.0)


SOFT_WINDOWS = [(0.0, 2.0, [0.9, 0.05, 0.05]), (2.0, 4.0, [0.4, 0.35, 0.25]), (4.0, 8.0, [0.1, 0.2, 0.7])]


def test_a_segment_below_the_heads_threshold_is_uncertain_and_the_summaries_count_its_seconds() -> None:
    partial = replace(ser(SOFT_WINDOWS), speakers=[SpeakerTurn(0.0, 3.9, "A"), SpeakerTurn(4.0, 8.0, "B")],
                      uncertain_below=0.5)
    result = do_merge(stt(seg(0, 0.0, 1.5), seg(1, 2.2, 3.8), seg(2, 4.5, 7.5)), partial)
    assert [s.emotion.uncertain for s in result.segments] == [False, True, False]
    assert result.segments[1].emotion.label == "angry", "uncertain is a mark, not a label"
    assert result.summary.uncertain_seconds == pytest.approx(1.6)
    assert {s.speaker: s.uncertain_seconds for s in result.speakers} == pytest.approx({"S1": 1.6, "S2": 0.0})
    assert result.summary.emotion_from == "transcript"


def test_without_a_threshold_nothing_is_called_certain_or_uncertain() -> None:
    result = do_merge(stt(seg(0, 0.0, 3.0)), ser(SOFT_WINDOWS))
    assert result.segments[0].emotion.uncertain is None and result.summary.uncertain_seconds is None


def test_speech_without_a_transcript_is_scored_over_the_diarized_speech() -> None:
    partial = replace(ser(WINDOWS), speakers=[SpeakerTurn(0.0, 2.0, "x"), SpeakerTurn(4.0, 7.0, "y"),
                                              SpeakerTurn(6.0, 8.0, "x")], uncertain_below=0.5)
    result = do_merge(stt(), partial)
    assert result.segments == []
    summary = result.summary
    assert (summary.emotion_from, summary.dominant_emotion) == ("speech", "neutral")
    assert summary.speech_seconds == pytest.approx(6.0), "overlapping turns count once"
    assert {s.label: s.score for s in summary.distribution} == pytest.approx(
        {"angry": 2 / 6, "happy": 0.0, "neutral": 4 / 6})
    assert summary.uncertain_seconds == 0.0
    by_speaker = {s.speaker: s for s in result.speakers}
    assert set(by_speaker) == {"S1", "S2"}
    assert by_speaker["S1"].talk_seconds == pytest.approx(4.0) and by_speaker["S1"].turns == 2
    assert by_speaker["S2"].dominant_emotion == "neutral" and by_speaker["S2"].overlap_seconds == pytest.approx(1.0)


def test_speech_without_a_transcript_on_channels_apart_is_scored_per_channel() -> None:
    windows = [EmotionWindow(0.0, 4.0, [1.0, 0.0, 0.0], 0), EmotionWindow(0.0, 4.0, [0.0, 1.0, 0.0], 1)]
    partial = replace(ser([]), windows=windows, channels=["left", "right"],
                      speakers=[SpeakerTurn(0.0, 1.0, "left", 0), SpeakerTurn(1.0, 4.0, "right", 1)])
    result = do_merge(replace(stt(), channels=["left", "right"]), partial)
    assert result.summary.emotion_from == "speech"
    assert {s.speaker: s.dominant_emotion for s in result.speakers} == {"left": "angry", "right": "happy"}
    assert result.summary.dominant_emotion == "happy"


def test_silence_with_no_speech_regions_says_nothing_was_scored() -> None:
    result = do_merge(stt(), ser(WINDOWS))
    assert result.summary.emotion_from is None and result.speakers is None


def test_a_transcript_of_dots_is_no_transcript_and_the_speech_is_scored_instead() -> None:
    dots = replace(seg(0, 0.1, 0.1), text="...")
    partial = replace(ser(WINDOWS), speakers=[SpeakerTurn(0.0, 7.0, "x")])
    result = do_merge(stt(dots), partial)
    assert len(result.segments) == 1 and result.segments[0].emotion is not None, "what STT wrote stays"
    assert result.summary.emotion_from == "speech" and result.summary.speech_seconds == pytest.approx(7.0)
    assert result.speakers[0].talk_seconds == pytest.approx(7.0)
