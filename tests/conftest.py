"""Shared fixtures: settings pointing at this checkout, real photos from packages."""

from __future__ import annotations

import pytest

from facefuse import samples
from facefuse.settings import Settings, get_settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def astronaut() -> bytes:
    return samples.astronaut()


@pytest.fixture(scope="session")
def grace_hopper() -> bytes:
    return samples.grace_hopper()


@pytest.fixture(scope="session")
def coffee() -> bytes:
    return samples.coffee()


@pytest.fixture(scope="session")
def group_photo() -> bytes:
    try:
        return samples.group()
    except FileNotFoundError as exc:  # `make setup` fetches it; say how when it is missing
        pytest.fail(str(exc))
