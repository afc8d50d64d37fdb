"""Reports in a real browser: headless Chromium opens the pages from file:// URLs.

Without Debian's ``chromium`` these tests skip with the reason; under CI=true they fail,
since CI installs it (``.ci/run``).
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import av
import numpy as np
import pytest

from tests.audio_factory import SAMPLES
from tests.chromium import Chromium, Tab, find_chromium
from tests.result_factory import golden, silence_result, synthetic_result, synthetic_windows
from workers.core.contracts import SerPartial, from_dict
from workers.report.index import render_index
from workers.report.page import render_report
from workers.report.view import read_view

SPEAKERS = ("agent", "customer")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = find_chromium()
    if binary is None:
        reason = "chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    chromium = Chromium(binary, tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def open_page(browser: Chromium, path: Path, html: str) -> Tab:
    path.write_text(html, encoding="utf-8")
    return browser.open(path.as_uri())


def picture(png: bytes) -> np.ndarray:
    with av.open(io.BytesIO(png)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def assert_not_blank(png: bytes) -> None:
    pixels = picture(png).reshape(-1, 3)
    colours = len(np.unique(pixels, axis=0))
    assert colours > 50 and pixels.std() > 10, f"{colours} colours: the screenshot looks blank"


def wait_until(tab: Tab, expression: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = tab.evaluate(expression)
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def played_from(tab: Tab, start: float) -> float | None:
    """The player's position once it reaches ``start``, looked for briefly: a seek is immediate,
    while playing there from the beginning would take seconds."""
    return wait_until(tab, f"(t => t >= {start} - 0.01 && t)(document.querySelector('audio').currentTime)", 0.5)


@pytest.fixture
def speech_page(browser: Chromium, tmp_path: Path):
    """Five segments inside the 19.6 s support-call sample, two speakers, emotion windows, the audio
    beside the page."""
    result = synthetic_result(5, speakers=SPEAKERS, name="support call.flac")
    windows = from_dict(SerPartial, synthetic_windows(result))
    shutil.copy(SAMPLES / "en_support_call.flac", tmp_path / "support call.flac")
    html = render_report(result, audio_src="support%20call.flac", windows=windows)
    tab = open_page(browser, tmp_path / "support call.flac.html", html)
    assert wait_until(tab, "document.querySelector('audio').readyState >= 1"), "the linked audio loads from file://"
    yield tab, result, windows
    tab.close()


def test_every_segment_is_rendered_and_the_timeline_has_a_point_per_window(speech_page) -> None:
    tab, result, windows = speech_page
    assert tab.evaluate("document.querySelectorAll('ol.transcript > li.seg').length") == len(result["segments"])
    points = tab.evaluate("Object.fromEntries([...document.querySelectorAll('svg.timeline polyline')]"
                          ".map(p => [p.dataset.label, p.points.numberOfItems]))")
    assert points == {label: len(windows.windows) for label in windows.labels}
    assert len(windows.windows) == 10
    lanes = tab.evaluate("[...document.querySelectorAll('svg.timeline text')].map(t => t.textContent)")
    assert set(SPEAKERS) <= set(lanes)
    assert tab.exceptions() == []


def test_clicking_a_segment_plays_from_its_start_and_highlights_it(speech_page) -> None:
    tab, result, _ = speech_page
    start = result["segments"][3]["start"]
    tab.click("ol.transcript > li.seg:nth-child(4)")
    now = played_from(tab, start)
    assert now and start - 0.01 <= now < start + 0.5, f"currentTime {now}, segment starts at {start}"
    playing = tab.evaluate("[...document.querySelectorAll('li.seg.playing')].map(li => +li.dataset.s)")
    assert playing == [start]
    assert tab.evaluate("document.querySelector('li.seg.playing').getAttribute('aria-current')") == "true"
    assert tab.exceptions() == []


def test_keyboard_moves_between_segments_and_enter_plays(speech_page) -> None:
    tab, result, _ = speech_page
    tab.evaluate("document.querySelector('li.seg[tabindex=\"0\"]').focus()")
    for key in ("End", "Home", "ArrowDown", "ArrowDown", "Enter"):
        tab.press(key)
    start = result["segments"][2]["start"]
    assert tab.evaluate("+document.activeElement.dataset.s") == start
    assert tab.evaluate("[...document.querySelectorAll('li.seg[tabindex=\"0\"]')].length") == 1, "one tab stop"
    now = played_from(tab, start)
    assert now and now < start + 0.5
    assert tab.evaluate("+document.querySelector('li.seg.playing').dataset.s") == start
    tab.press("Escape")
    assert wait_until(tab, "document.querySelector('audio').paused")


def test_clicking_the_timeline_seeks_to_that_moment(speech_page) -> None:
    tab, _, _ = speech_page
    tab.click("svg.timeline")  # the middle of the picture
    x0, x1, end = tab.evaluate("['x0', 'x1', 'end'].map(k => +document.querySelector('svg.timeline').dataset[k])")
    expected = (500 - x0) / (x1 - x0) * end
    now = wait_until(tab, "(t => t > 1 && t)(document.querySelector('audio').currentTime)", 0.5)
    assert now == pytest.approx(expected, abs=1.0)


def test_screenshot_of_the_report_is_not_blank_in_light_dark_and_print(speech_page) -> None:
    tab, _, _ = speech_page
    assert_not_blank(tab.screenshot(full_page=True))
    tab.media(dark=True)
    assert tab.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(21, 21, 21)"
    assert_not_blank(tab.screenshot())
    tab.media(media="print")
    assert tab.evaluate("getComputedStyle(document.querySelector('.player')).display") == "none"
    assert tab.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(255, 255, 255)"


def test_failed_result_shows_its_error(browser: Chromium, tmp_path: Path) -> None:
    tab = open_page(browser, tmp_path / "failed.html", render_report(golden("result_failed.json")))
    text = tab.evaluate("document.body.innerText")
    assert "This file could not be analysed" in text and "not_audio" in text and "no audio stream" in text
    assert tab.evaluate("document.querySelectorAll('li.seg').length") == 0
    assert_not_blank(tab.screenshot())
    assert tab.exceptions() == []


def test_silence_result_says_no_speech(browser: Chromium, tmp_path: Path) -> None:
    tab = open_page(browser, tmp_path / "silence.html", render_report(silence_result()))
    assert "No speech was found in this file." in tab.evaluate("document.body.innerText")
    assert tab.evaluate("[document.querySelectorAll('li.seg').length, !!document.querySelector('svg.timeline')]") \
        == [0, False]
    assert tab.exceptions() == []


def test_an_hour_with_1200_segments_opens_quickly_and_stays_usable(browser: Chromium, tmp_path: Path) -> None:
    result = synthetic_result(1200, speakers=SPEAKERS)
    windows = from_dict(SerPartial, synthetic_windows(result))
    path = tmp_path / "hour.html"
    path.write_text(render_report(result, windows=windows), encoding="utf-8")
    started = time.perf_counter()
    tab = browser.open(path.as_uri())
    seconds = time.perf_counter() - started
    assert seconds < 5.0, f"{seconds:.1f} s to load 1,200 segments"
    assert tab.evaluate("document.querySelectorAll('li.seg').length") == 1200
    assert set(tab.evaluate("[...document.querySelectorAll('polyline')].map(p => p.points.numberOfItems)")) \
        == {len(windows.windows)}
    tab.click("ol.transcript > li.seg:last-child")  # no audio: the segment is still selected
    assert tab.evaluate("+document.querySelector('li.seg.playing').dataset.s") == result["segments"][-1]["start"]
    assert tab.exceptions() == []


def test_index_links_open_the_reports(browser: Chromium, tmp_path: Path) -> None:
    result = synthetic_result(3, name="a call.flac")
    (tmp_path / "a call.flac.html").write_text(render_report(result), encoding="utf-8")
    index = render_index([("a%20call.flac.html", read_view(result))], title="calls")
    tab = open_page(browser, tmp_path / "index.html", index)
    tab.click("table.files a")
    tab.wait_for_load()
    assert tab.evaluate("location.pathname").endswith("/a%20call.flac.html")
    assert tab.evaluate("document.querySelectorAll('li.seg').length") == 3
    assert tab.exceptions() == []
