"""Golden .eml files, one per edition kind. Regenerate with DIGEST_REGEN_GOLDEN=1 make test.

Values derived from the signing key (token, Message-ID, MIME boundary) are replaced by fixed
names before comparing, so the files show content and structure; the key-derived values are
checked by their own tests.

The files hold what the built-in templates make of the sample newsroom: they are rendered without
the sample's own templates/ folder (its footer override is tested in test_templates.py), so they
change only when digest's templates or pipeline do.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("DIGEST_REGEN_GOLDEN") == "1"
KINDS = {"national": "am", "city": "denver", "topic": "climate"}


def normalise(data: bytes, boundary: str, token: str, message_id: str) -> bytes:
    """Replace the key-derived values; anything else that differs is a real change."""
    text = data.decode("ascii")
    text = text.replace(boundary, "==BOUNDARY==").replace(message_id, "<MESSAGE-ID@golden>")
    # The token may be split across quoted-printable soft line breaks in the bodies.
    pattern = "(?:=\r\n)?".join(re.escape(c) for c in token)
    text = re.sub(pattern, "TOKEN", text)
    return text.encode("ascii")


def builtin_only(settings):
    """``settings`` without the newsroom's templates folder: the built-in templates alone."""
    return dataclasses.replace(settings, paths=dataclasses.replace(settings.paths, templates=None))


@pytest.mark.parametrize("kind, slug", KINDS.items())
def test_golden_eml(kind: str, slug: str, sample_settings, sample_stories, sample_subscribers) -> None:
    from digest.compose.pipeline import compose
    from digest.compose.planning import plan_issue

    settings = builtin_only(sample_settings)
    issue = plan_issue(settings, settings.edition(slug), settings.demo_date, sample_stories.stories, fresh=True)
    composed = compose(settings, issue)
    reader = sample_subscribers.audience(slug)[0]
    recipient = composed.recipient(reader)
    data = composed.message(recipient)
    token = recipient.unsubscribe_url.rsplit("/", 1)[1]
    got = normalise(data, composed.template.boundary, token, recipient.message_id)
    assert b"TOKEN" in got and b"==BOUNDARY==" in got
    path = GOLDEN / f"{kind}-{slug}.eml"
    if REGENERATE or not path.exists():
        if not REGENERATE:
            pytest.fail(f"{path.name} is missing; run DIGEST_REGEN_GOLDEN=1 make test to create it")
        path.write_bytes(got)
    assert got == path.read_bytes(), f"{path.name} differs; if the change is intended, regenerate with DIGEST_REGEN_GOLDEN=1"


def test_compose_is_deterministic(sample_settings, sample_stories, sample_subscribers) -> None:
    """The same issue composed twice gives the same bytes: a dry run shows what a send will send."""
    from digest.compose.pipeline import compose
    from digest.compose.planning import choose_stories

    edition = sample_settings.edition("twin-cities")
    issue = choose_stories(edition, sample_settings.demo_date, sample_stories.stories, words_per_minute=sample_settings.newsroom.words_per_minute)
    reader = sample_subscribers.audience("twin-cities")[0]
    first, second = compose(sample_settings, issue), compose(sample_settings, issue)
    assert first.message(first.recipient(reader)) == second.message(second.recipient(reader))
