"""Shared fixtures: settings pointing at this checkout, real photos from packages.

Tests never write into the user's var/: templates and gateway keys live in a temporary
folder for the session (FACEFUSE_TEMPLATE_DIR, FACEFUSE_GATEWAY_KEYS_FILE, inherited by
every server the tests start), seeded with a copy of the registered templates.
Triton's gateway key is fixed for the session (FACEFUSE_TRITON_GATEWAY_KEY), so every
Triton and gateway the tests start, in this process or another, share it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

from facefuse import samples
from facefuse.settings import Settings, get_settings

_TEST_ROOT = Path(tempfile.mkdtemp(prefix="facefuse-tests-"))


def pytest_configure(config):
    user_templates = get_settings().templates_path
    templates = _TEST_ROOT / "templates"
    if user_templates.is_dir():
        shutil.copytree(user_templates, templates, ignore=shutil.ignore_patterns(".staging-*"),
                        copy_function=shutil.copy)  # fresh mtimes: an age-based /tmp cleaner must not take them
    os.environ["FACEFUSE_TEMPLATE_DIR"] = str(templates)
    os.environ["FACEFUSE_GATEWAY_KEYS_FILE"] = str(_TEST_ROOT / "gateway" / "keys.json")
    os.environ["FACEFUSE_TRITON_GATEWAY_KEY"] = secrets.token_urlsafe(24)
    get_settings.cache_clear()


def pytest_unconfigure(config):
    shutil.rmtree(_TEST_ROOT, ignore_errors=True)


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
