"""Tests on the real recordings in ../shared/external: skipped with the reason where that folder
is absent (a user's clone), failed under CI, where it is always laid beside the checkout."""

from __future__ import annotations

import os

import pytest

from bench.corpus import EXTERNAL


def require_external() -> None:
    if EXTERNAL.is_dir():
        return
    reason = f"real recordings not found at {EXTERNAL} (../shared/external beside the repository)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
