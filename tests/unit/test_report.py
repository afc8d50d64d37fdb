"""The report page and the index as HTML text: what a reader is shown, escaped, self-contained, light."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.result_factory import golden, silence_result, synthetic_result, synthetic_windows
from workers.core.contracts import Result, SerPartial, from_dict, loads
from workers.report.index import render_index
from workers.report.layout import label_colours
from workers.report.page import render_report
from workers.report.view import NotAResult, read_view


def rows(html: str) -> list[str]:
    return re.findall(r'<li class="seg [^"]*"[^>]*>.*?</li>', html)


def polylines(html: str) -> dict[str, int]:
    """Label -> number of points of its line in the timeline."""
    return {label: len(points.split()) for label, points in
            re.findall(r'<polyline class="line e\d+" data-label="([^"]*)" points="([^"]*)"', html)}


def test_every_segment_is_a_row_with_its_time_emotion_and_text_in_order() -> None:
    result = golden()
    html = render_report(result)
    found = rows(html)
    assert len(found) == len(result["segments"]) == 2
    assert 'data-s="1.26"' in found[1] and ">0:01<" in found[1]
    assert "fear <small>14 %</small>" in found[1]
    assert "Quisiera reservar una mesa" in found[1] and "Buenos días." in found[0]


def test_timeline_has_a_line_per_label_with_a_point_per_scored_segment() -> None:
    result = synthetic_result(9)
    assert polylines(render_report(result)) == {"angry": 9, "happy": 9, "neutral": 9, "sad": 9}


def test_with_the_ser_partial_the_timeline_has_a_point_per_emotion_window() -> None:
    ser = from_dict(SerPartial, golden("ser_partial.json"))
    html = render_report(golden(), windows=ser)
    assert polylines(html) == {label: 4 for label in ser.labels}
    assert "each of the 4 emotion windows (3 s long, one every 1.5 s)" in html
    first = re.search(r'data-label="angry" points="([\d.]+),', html).group(1)
    assert float(first) == pytest.approx(72 + (1000 - 72 - 10) * 1.5 / 6.6576, abs=0.1), "first window's middle"
    result = synthetic_result(20)
    assert set(polylines(render_report(result, windows=from_dict(SerPartial, synthetic_windows(result))))
               .values()) == {43}


def test_windows_of_another_job_are_refused_and_failed_or_two_channel_windows_leave_the_segments() -> None:
    view = read_view(golden())
    other = from_dict(SerPartial, golden("ser_partial.json") | {"job_id": "0" * 32})
    with pytest.raises(ValueError, match="SER partial is of job 0000"):
        view.with_windows(other)
    failed = from_dict(SerPartial, golden("ser_partial.json") | {"status": "failed", "windows": []})
    assert view.with_windows(failed).track.kind == "segment"
    two_channels = golden("ser_partial.json")
    for i, window in enumerate(two_channels["windows"]):
        window["channel"] = i % 2
    assert view.with_windows(from_dict(SerPartial, two_channels)).track.kind == "segment"
    one_channel = golden("ser_partial.json")
    for window in one_channel["windows"]:
        window["channel"] = 1
    assert view.with_windows(from_dict(SerPartial, one_channel)).track.kind == "window"


def test_labels_and_their_colours_come_from_the_result_not_a_fixed_set() -> None:
    result = synthetic_result(6, labels=("calm", "frustrated", "elated"))
    html = render_report(result)
    assert set(polylines(html)) == {"calm", "frustrated", "elated"}
    colours = label_colours(["calm", "frustrated", "elated", "x", "y"])
    assert len(set(colours.values())) == 5
    for i, label in enumerate(("calm", "frustrated", "elated")):
        assert f".e{i}{{--c:{colours[label]}}}" in html
        assert re.search(rf'<li class="e{i}"><svg[^>]*>.*?</svg>{label}</li>', html), "legend names every label"


def test_page_is_self_contained() -> None:
    html = render_report(golden(), audio_src="es_reserva.flac")
    assert "<style>" in html and "<script>" in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "nothing is fetched from a network"
    assert "<link" not in html and "<script src" not in html
    assert '<audio controls preload="metadata" src="es_reserva.flac">' in html


def test_text_from_the_result_is_escaped() -> None:
    result = golden()
    result["job"]["name"] = 'a "quoted" <b>name</b>.wav'
    result["segments"][0]["text"] = "<script>alert(1)</script> & more"
    html = render_report(result, audio_src='x.wav" onerror="alert(1)')
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "<b>name</b>" not in html and 'src="x.wav&quot; onerror=&quot;alert(1)"' in html


def test_untrained_emotion_model_is_said_plainly() -> None:
    html = render_report(golden())
    assert "untrained" in html and "placeholders" in html
    trained = synthetic_result(2)
    assert "placeholders" not in render_report(trained)


def test_a_record_that_does_not_say_its_emotion_model_is_trained_is_shown_as_untrained() -> None:
    record = synthetic_result(2)
    del record["engines"]["ser"]["trained"]  # the contract's default is true; the report does not take it
    assert read_view(record).ser_trained is False
    assert "placeholders" in render_report(record)
    assert read_view(loads(Result, json.dumps(synthetic_result(2)))).ser_trained is True


@pytest.mark.parametrize("trained", ["true", None])
def test_a_trained_flag_that_is_not_a_boolean_is_refused_where_it_is(trained) -> None:
    record = synthetic_result(2)
    record["engines"]["ser"]["trained"] = trained
    with pytest.raises(NotAResult, match=r"at engines\.ser\.trained"):
        read_view(record)


def test_speakers_get_a_card_each_from_the_result_and_a_lane_each() -> None:
    result = synthetic_result(6, speakers=("agent", "customer", "customer"))
    result["speakers"][1] |= {"interruptions": 2, "overlap_seconds": 1.25, "talk_seconds": 754.0, "share": 0.8,
                              "text_sentiment": {"label": "NEGATIVE", "score": -0.6}}
    html = render_report(result)
    cards = re.findall(r"<h3>Speaker</h3>(.*?)</div>", html)
    assert len(cards) == 2 and '<p class="big">agent</p>' in cards[0] and '<p class="big">customer</p>' in cards[1]
    # agent, customer, customer, agent, customer, customer: two turns each, as the result says.
    assert "2 turns" in cards[0] and "interruption" not in cards[0]
    assert "12:34 talking (80 % of speech), 2 turns, 2 interruptions, 1.2 s over another speaker" in cards[1]
    assert "words: negative" in cards[1] and "mostly angry" in cards[0]
    assert re.search(r'text-anchor="end">agent</text>', html) and re.search(r'text-anchor="end">customer</text>', html)
    assert len(re.findall(r'<rect class="s e\d+"', html)) == 6
    assert html.count('<span class="who">customer</span>') == 4


def test_speech_longer_than_the_audio_says_voices_overlap() -> None:
    result = synthetic_result(3, speakers=("CH1", "CH2")) | {"duration": 5.0}
    html = render_report(result)
    assert "more than the 0:05 of audio: voices overlap; 3 segments" in html and "180 %" not in html


def test_words_sentiment_is_shown_where_the_result_has_it() -> None:
    result = synthetic_result(2)
    result["segments"][0]["text_sentiment"] = {"label": "POSITIVE", "score": 0.7}
    result["summary"]["text_sentiment"] = {"label": "POSITIVE", "score": 0.35}
    html = render_report(result)
    assert '<small class="words">words: positive</small>' in rows(html)[0] and "words:" not in rows(html)[1]
    assert '<p class="words">words: positive</p>' in html


def test_without_speakers_there_is_one_speech_lane_and_no_speaker_card() -> None:
    html = render_report(synthetic_result(3))
    assert ">speech</text>" in html and "<h3>Speaker</h3>" not in html and 'class="who"' not in html


def test_failed_result_gets_a_page_that_says_why() -> None:
    html = render_report(golden("result_failed.json"))
    assert 'class="failure" role="alert"' in html and "could not be analysed" in html
    assert "<code>not_audio</code>: no audio stream" in html
    assert "<dt>type</dt><dd>audio/flac</dd>" in html and "<dt>size</dt><dd>115.6 KB</dd>" in html
    assert not rows(html) and "<svg class=\"timeline\"" not in html


def test_silence_says_no_speech_and_draws_no_timeline() -> None:
    html = render_report(silence_result())
    assert "No speech was found" in html and not rows(html) and "<svg class=\"timeline\"" not in html


def test_a_record_that_is_not_a_result_is_refused_naming_what_is_missing() -> None:
    partial = {"job_id": "x", "status": "ok", "windows": []}
    with pytest.raises(NotAResult, match="'job'"):
        render_report(partial)
    bad_status = golden() | {"status": "pending"}
    with pytest.raises(NotAResult, match="'status' is 'pending'"):
        render_report(bad_status)
    with pytest.raises(NotAResult, match=r"segments\[0\].*'start', 'end'"):
        render_report(golden() | {"segments": [{"text": "no times"}]})
    with pytest.raises(NotAResult, match="JSON object"):
        render_report([1, 2])  # type: ignore[arg-type]


def test_a_record_that_does_not_fit_the_contract_is_refused_naming_where() -> None:
    with pytest.raises(NotAResult, match="expected float at duration, got 'long'"):
        read_view(golden() | {"duration": "long"})
    result = golden()
    result["segments"][0]["emotion"]["scores"] = [{"label": "fear"}]
    with pytest.raises(NotAResult, match=r"at segments\[0\]\.emotion\.scores\[0\]"):
        read_view(result)


def test_results_of_older_and_newer_pipeline_versions_open() -> None:
    old = read_view(golden("v0.1/result.json"))  # before speakers, channels and text sentiment
    assert old.segments and old.speakers == [] and old.segments[0].text_sentiment is None
    newer = golden()
    newer["added_later"] = [{"speaker": "S1", "start": 0.0, "end": 1.0}]  # fields a later version adds, anywhere
    newer["segments"][0]["emotion"]["added_later"] = True
    newer["engines"]["ser"]["added_later"] = "research only"
    view = read_view(newer)
    assert [s.text for s in view.segments] == [s.text for s in read_view(golden()).segments]
    assert render_report(newer) == render_report(golden())


SEVEN = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def test_an_hour_of_speech_renders_quickly_and_stays_light() -> None:
    result = synthetic_result(1200, labels=SEVEN, speakers=("S1", "S2"))
    windows = from_dict(SerPartial, synthetic_windows(result))
    assert result["duration"] > 3600 and len(windows.windows) > 2600
    started = time.perf_counter()
    html = render_report(result, windows=windows)
    seconds = time.perf_counter() - started
    assert seconds < 1.0, f"{seconds:.2f} s for 1,200 segments and {len(windows.windows)} windows"
    assert len(rows(html)) == 1200 and set(polylines(html).values()) == {len(windows.windows)}
    assert ">0:00:00<" in html and ">1:05:56<" in html, "one h:mm:ss format down an hour-long page"
    per_segment = len(html.encode()) / 1200
    assert per_segment < 700, f"{per_segment:.0f} bytes of page per segment"
    elements = len(re.findall(r"<[a-z]", html)) / 1200
    assert elements < 8, f"{elements:.1f} elements per segment"


def test_index_lists_every_file_with_status_and_failures_with_their_error() -> None:
    ok, failed = read_view(synthetic_result(3, name="calls/a.flac")), read_view(golden("result_failed.json"))
    html = render_index([("calls/a.flac.html", ok), ("es_reserva.flac.html", failed)], title="Results in out")
    assert "2 files: 1 ok, 1 failed" in html
    table_rows = re.findall(r"<tr class=\"(ok|failed)\">(.*?)</tr>", html)
    assert [r[0] for r in table_rows] == ["ok", "failed"]
    assert '<a href="calls/a.flac.html">calls/a.flac</a>' in table_rows[0][1] and "angry" in table_rows[0][1]
    assert "<code>not_audio</code>: no audio stream" in table_rows[1][1]
    assert "<h1>Results in out</h1>" in html and "No results yet" in render_index([], title="empty")


def test_a_result_whose_emotions_failed_still_shows_its_transcript() -> None:
    result = golden() | {"status": "failed", "summary": None,
                         "error": {"code": "invalid_ser_partial", "message": "windows do not match the labels"}}
    for segment in result["segments"]:
        segment["emotion"] = None
    html = render_report(result)
    assert "could not be analysed" in html and "invalid_ser_partial" in html
    assert len(rows(html)) == 2 and all('class="seg e-none"' in row and ">–<" in row for row in rows(html))
    assert polylines(html) == {} and "of each of the 0 scored segments" in html


def test_overlapping_diarized_turns_are_drawn_in_each_speakers_lane() -> None:
    result = synthetic_result(2, speakers=("S1", "S2"))
    end = result["segments"][-1]["end"]
    result["turns"] = [{"start": 0.0, "end": end * 0.6, "speaker": "S1", "channel": None},
                       {"start": end * 0.4, "end": end, "speaker": "S2", "channel": None},
                       {"start": end * 0.5, "end": end * 0.55, "speaker": "S3", "channel": None}]
    html = render_report(result)
    bars = re.findall(r'<rect class="turn" x="([\d.]+)" y="([\d.]+)" width="([\d.]+)"', html)
    assert len(bars) == 3 and len({y for _, y, _ in bars}) == 3, "one bar per turn, each in its speaker's lane"
    (x1, _, w1), (x2, _, _) = bars[0], bars[1]
    assert float(x2) < float(x1) + float(w1), "the two speakers' bars overlap in time"
    assert re.search(r'text-anchor="end">S3</text>', html), "a speaker heard but not transcribed gets a lane"


def test_uncertain_segments_and_the_uncertain_share_of_speech_are_shown() -> None:
    result = synthetic_result(3, speakers=("agent", "customer", "agent"))
    result["segments"][1]["emotion"]["uncertain"] = True
    result["segments"][0]["emotion"]["uncertain"] = False
    speech = result["summary"]["speech_seconds"]
    result["summary"]["uncertain_seconds"] = speech / 4
    result["speakers"][1]["uncertain_seconds"] = result["speakers"][1]["talk_seconds"] / 2
    html = render_report(result)
    assert '<small class="uncertain">uncertain</small>' in rows(html)[1]
    assert "uncertain" not in rows(html)[0] and "uncertain" not in rows(html)[2]
    assert "emotion uncertain for" in html and "(25 %)" in html
    cards = re.findall(r"<h3>Speaker</h3>(.*?)</div>", html)
    assert "(50 %)" in cards[1] and "emotion uncertain" not in cards[0]


def test_a_summary_scored_without_a_transcript_says_so() -> None:
    result = synthetic_result(2)
    result["summary"]["emotion_from"] = "speech"
    assert "No words were transcribed" in render_report(result)
    assert "No words were transcribed" not in render_report(synthetic_result(2))
