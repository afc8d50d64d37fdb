"""Fixtures: the root module and the push_worker module, parsed once."""

from __future__ import annotations

import pytest

from .hcl_config import MODULE, TERRAFORM, Config


@pytest.fixture(scope="session")
def root() -> Config:
    return Config(TERRAFORM)


@pytest.fixture(scope="session")
def module() -> Config:
    return Config(MODULE)
