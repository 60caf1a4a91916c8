"""An issue's per-reader copies: the one loop render, send and test copies share (``deliver.copies``)."""

from __future__ import annotations

import asyncio

from digest.deliver.copies import copies


def collect(composed, readers, recipient_of, sender, **kwargs):
    async def run():
        return [copy async for copy in copies(composed, readers, recipient_of, sender, **kwargs)]

    return asyncio.run(run())


def test_each_reader_gets_one_copy_in_order_addressed_to_them(composed_sample, sample_subscribers):
    composed = composed_sample("am")
    audience = sample_subscribers.audience("am")
    made = collect(composed, audience, composed.recipient, "am@northline.example.org")
    assert [c.reader for c in made] == audience
    assert [(c.envelope.sender, c.envelope.recipient) for c in made] == [("am@northline.example.org", s.email) for s in audience]
    assert all(c.data == composed.message(composed.recipient(s)) for c, s in zip(made, audience))


def test_a_copy_is_built_only_when_asked_for(composed_sample):
    """The dispatcher checks suppressions between copies: a reader is made into bytes only when it is reached."""
    composed = composed_sample("am")
    seen: list[str] = []

    def recipient_of(address: str):
        seen.append(address)
        return composed.recipients.for_address(address)

    async def first_only():
        async for copy in copies(composed, ["a@example.com", "b@example.com"], recipient_of, "am@northline.example.org"):
            return copy

    first = asyncio.run(first_only())
    assert first.recipient.email == "a@example.com" and seen == ["a@example.com"]
