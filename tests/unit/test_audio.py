"""Decoding: every common container by content, odd-but-valid audio, and clear errors for bad input."""

from __future__ import annotations


import numpy as np
import pytest

from tests.audio_factory import random_bytes, FORMATS, encode, png_bytes, speech_sample, tone, zip_bytes
from workers.processing.audio import SAMPLE_RATE, decode
from workers.core.errors import PermanentError

LIMIT = 4 * 3600.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_common_container_decodes_to_16k_mono_float32(fmt: str) -> None:
    data = encode(tone(2.0, rate=48_000, freq=440), rate=48_000, fmt=fmt, channels=2)
    audio = decode(data, max_seconds=LIMIT)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert audio.duration == pytest.approx(2.0, abs=0.1)
    # The tone survives: its energy is at 440 Hz after resampling to 16 kHz.
    spectrum = np.abs(np.fft.rfft(audio.samples[4000:20000]))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / 16000
    assert peak_hz == pytest.approx(440, abs=5)


def test_format_comes_from_content_not_from_the_name(tmp_path) -> None:
    path = tmp_path / "actually-an-mp3.wav"
    path.write_bytes(encode(tone(1.0), fmt="mp3"))
    assert decode(path, max_seconds=LIMIT).source_format == "mp3"


def test_many_channels_and_high_rates_become_mono_16k() -> None:
    audio = decode(encode(tone(1.0, rate=192_000), rate=192_000, fmt="wav", channels=8), max_seconds=LIMIT)
    assert audio.source_channels == 8 and audio.source_rate == 192_000
    assert len(audio.samples) == pytest.approx(SAMPLE_RATE, abs=64)
    assert np.abs(audio.samples).max() == pytest.approx(0.3, abs=0.05)


def test_a_stream_that_changes_rate_and_layout_midway_decodes_whole() -> None:
    # Two mp3 files joined end to end, as `cat a.mp3 b.mp3` makes them.
    joined = encode(tone(2.0, rate=44_100), rate=44_100, fmt="mp3", channels=1) + encode(
        tone(2.0, rate=22_050), rate=22_050, fmt="mp3", channels=2
    )
    audio = decode(joined, max_seconds=LIMIT)
    assert audio.duration == pytest.approx(4.0, abs=0.15)
    assert np.abs(audio.samples[int(3.0 * SAMPLE_RATE):]).max() > 0.1  # the second file is there


def test_a_tenth_of_a_second_decodes() -> None:
    assert decode(encode(tone(0.1)), max_seconds=LIMIT).duration == pytest.approx(0.1, abs=0.01)


def test_truncated_mp3_keeps_what_decodes() -> None:
    data = encode(tone(4.0), fmt="mp3")
    audio = decode(data[: len(data) // 2], max_seconds=LIMIT)
    assert 1.0 < audio.duration < 3.0


def test_speech_sample_decodes() -> None:
    audio = decode(speech_sample(), max_seconds=LIMIT)
    assert audio.duration == pytest.approx(19.65, abs=0.05)


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", "empty_file"),
        (random_bytes(64 * 1024), None),
        (b"Meeting notes\nNothing to hear here.\n" * 50, "not_audio"),
        (png_bytes(), "not_audio"),
        (zip_bytes(), "not_audio"),
    ],
    ids=["empty", "random-bytes", "text", "png", "zip"],
)
def test_bad_input_is_a_permanent_error_with_a_clear_message(data: bytes, code: str | None) -> None:
    with pytest.raises(PermanentError) as info:
        decode(data, max_seconds=LIMIT)
    assert info.value.code in ({code} if code else {"not_audio", "corrupt_audio", "no_audio_decoded"})
    assert len(info.value.message) > 15


def test_audio_longer_than_the_limit_is_refused() -> None:
    with pytest.raises(PermanentError) as info:
        decode(encode(tone(5.0)), max_seconds=3.0)
    assert info.value.code == "too_long"
    assert "MAX_AUDIO_SECONDS" in info.value.message


def test_a_failure_message_does_not_name_the_scratch_file_it_was_read_from(tmp_path) -> None:
    path = tmp_path / "job-scratch" / "audio"
    path.parent.mkdir()
    path.write_bytes(b"Meeting notes\nNothing to hear here.\n" * 50)
    with pytest.raises(PermanentError) as info:
        decode(path, max_seconds=LIMIT)
    assert "job-scratch" not in info.value.message and "Invalid data" in info.value.message


def test_a_truncated_flac_decodes_what_is_there_and_says_what_was_lost() -> None:
    flac = encode(tone(10.0), fmt="flac")
    whole, cut = decode(flac, max_seconds=60), decode(flac[: len(flac) // 2], max_seconds=60)
    assert whole.warnings == ()
    assert 3.0 < cut.duration < 6.0
    assert any("undecodable packet" in w for w in cut.warnings), cut.warnings
    assert any(f"{cut.duration:.1f} s decoded of the 10.0 s" in w for w in cut.warnings), cut.warnings
