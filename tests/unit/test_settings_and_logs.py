"""Settings refuse values that would fail every job later; JSON logs carry UTC times."""

from __future__ import annotations

import json
import logging
import time

import pytest

from workers.errors import ConfigError
from workers.logs import CloudJsonFormatter
from workers.settings import Settings


@pytest.mark.parametrize("env, value", [
    ("MAX_AUDIO_SECONDS", "nan"), ("STT_BEAM_SIZE", "0"), ("SER_BATCH_SIZE", "0"), ("STT_BATCH_SIZE", "-1"),
    ("STT_DEVICE", "gpu"), ("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "JSON"), ("SER_HOP_SECONDS", "inf"),
])
def test_a_value_that_would_fail_later_is_refused_naming_its_variable(env: str, value: str) -> None:
    with pytest.raises(ConfigError, match=env):
        Settings.from_env({env: value})


def test_json_log_times_are_utc_whatever_the_time_zone(monkeypatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
        record.created = 1_790_000_000.25  # 2026-09-21T14:13:20.250Z
        entry = json.loads(CloudJsonFormatter().format(record))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert entry["time"] == "2026-09-21T14:13:20.250Z" and entry["severity"] == "INFO"
