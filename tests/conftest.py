"""Shared fixtures: the shipped sample newsroom, signed with a fixed test key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from digest.compose.pipeline import ComposedIssue, compose
from digest.compose.planning import plan_issue
from digest.config import load_settings, parse_signing_keys
from digest.models import Settings
from digest.readers.subscribers import SubscriberLoad, load_subscribers
from digest.sources.stories import StoryLoad, load_folder

ROOT = Path(__file__).resolve().parent.parent
TEST_KEY = "t1:test-signing-key-0123456789abcdef"


@pytest.fixture(scope="session")
def sample_settings() -> Settings:
    settings = load_settings(ROOT / "digest.toml", environ={})
    return dataclasses.replace(settings, signing_keys=parse_signing_keys(TEST_KEY))


@pytest.fixture(scope="session")
def sample_stories(sample_settings: Settings) -> StoryLoad:
    return load_folder(sample_settings.paths.stories)


@pytest.fixture(scope="session")
def sample_subscribers(sample_settings: Settings) -> SubscriberLoad:
    return load_subscribers(sample_settings.paths.subscribers, [e.slug for e in sample_settings.editions])


@pytest.fixture(scope="session")
def composed_sample(sample_settings: Settings, sample_stories: StoryLoad):
    """compose(slug) -> the sample day's issue of that edition (its note too), composed once per session."""
    cache: dict[str, ComposedIssue] = {}

    def get(slug: str) -> ComposedIssue:
        if slug not in cache:
            edition = sample_settings.edition(slug)
            issue = plan_issue(sample_settings, edition, sample_settings.demo_date, sample_stories.stories, fresh=True)
            cache[slug] = compose(sample_settings, issue)
        return cache[slug]

    return get
